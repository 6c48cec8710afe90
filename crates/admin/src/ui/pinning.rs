//! Pinning review: suspects with their evidence (signals, counts, clients, fingerprint, app)
//! and Approve / Reject forms, plus the learned bypasses, approvals and rejections in force.
//! The forms post to `/pinning/approve|reject`, which do what the API does (and the CLI), then
//! redirect back here (post/redirect/get, so a reload never repeats an approval).

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use sluice_store::{Approval, LearnedBypass, Rejection, Suspect, SuspectStatus};

use super::{csrf_field, esc, fmt_unix, page as layout, with_status, Nav};
use crate::api::{do_approve, do_reject, with_store, ApproveRequest, RejectRequest};
use crate::auth::Caller;
use crate::check::unix_now;
use crate::{AdminState, ApiError};

/// What the page says after a redirect.
#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    /// A host just approved.
    #[serde(default)]
    pub approved: Option<String>,
    /// A host just rejected.
    #[serde(default)]
    pub rejected: Option<String>,
}

/// The Approve form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveForm {
    /// Checked by the guard.
    #[serde(default)]
    pub csrf: String,
    /// The host.
    pub host: String,
    /// `fingerprint` or `host`.
    #[serde(default)]
    pub scope: Option<String>,
    /// The suspect's fingerprint.
    #[serde(default)]
    pub ja4: Option<String>,
    /// Why.
    #[serde(default)]
    pub note: String,
}

/// The Reject form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectForm {
    /// Checked by the guard.
    #[serde(default)]
    pub csrf: String,
    /// The host.
    pub host: String,
    /// Why.
    #[serde(default)]
    pub note: String,
}

struct Review {
    suspects: Vec<Suspect>,
    learned: Vec<LearnedBypass>,
    approved: Vec<Approval>,
    rejected: Vec<Rejection>,
}

/// `GET /pinning`.
pub async fn page(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    flash: Result<Query<Flash>, QueryRejection>,
) -> Response {
    let flash = flash.map(|Query(f)| f).unwrap_or_default();
    let msg = match (&flash.approved, &flash.rejected) {
        (Some(h), _) => format!(
            "Approved <b>{}</b>: the gateway applies it within seconds.",
            esc(h)
        ),
        (_, Some(h)) => format!("Rejected <b>{}</b>: it will not be learned again.", esc(h)),
        _ => String::new(),
    };
    render(&s, &caller, Ok(msg)).await
}

/// `POST /pinning/approve`.
pub async fn approve(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    form: Result<Form<ApproveForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return render(&s, &caller, Err(ApiError::from(e))).await,
    };
    let req = ApproveRequest {
        host: form.host,
        scope: form.scope,
        ja4: form.ja4,
        note: form.note,
    };
    match do_approve(&s, &caller, req).await {
        Ok((a, _)) => Redirect::to(&format!("/pinning?approved={}", a.host)).into_response(),
        Err(e) => render(&s, &caller, Err(e)).await,
    }
}

/// `POST /pinning/reject`.
pub async fn reject(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    form: Result<Form<RejectForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return render(&s, &caller, Err(ApiError::from(e))).await,
    };
    let req = RejectRequest {
        host: form.host,
        note: form.note,
    };
    match do_reject(&s, &caller, req).await {
        Ok((r, _)) => Redirect::to(&format!("/pinning?rejected={}", r.host)).into_response(),
        Err(e) => render(&s, &caller, Err(e)).await,
    }
}

/// The page, with a message (already HTML) or the error of a failed action.
async fn render(s: &AdminState, caller: &Caller, outcome: Result<String, ApiError>) -> Response {
    let (status, mut body) = match &outcome {
        Ok(msg) if msg.is_empty() => (StatusCode::OK, String::new()),
        Ok(msg) => (
            StatusCode::OK,
            format!("<p class=\"msg\" id=\"flash\">{msg}</p>"),
        ),
        Err(e) => (
            e.status(),
            format!("<p class=\"err\" id=\"flash\">{}</p>", esc(&e.to_string())),
        ),
    };
    body.insert_str(0, "<h1>Pinning review</h1>");
    let rule = crate::api::suspect_rule(s);
    let review = with_store(s, move |store| {
        let now = unix_now();
        Ok(Review {
            suspects: store.suspects(rule, now)?,
            learned: store.learned(now)?,
            approved: store.approvals()?,
            rejected: store.rejections()?,
        })
    })
    .await;
    match review {
        Ok(r) => body.push_str(&sections(&r, caller, rule.threshold)),
        Err(e) => body.push_str(&format!("<p class=\"err\">{}</p>", esc(&e.to_string()))),
    }
    with_status(
        status,
        layout("Pinning review", Nav::Pinning, Some(caller), &body),
    )
}

fn sections(r: &Review, caller: &Caller, threshold: u32) -> String {
    let mut out = format!(
        "<p>A client that rejects the certificate sluice minted (a fatal certificate alert, or a \
         close right after the handshake without sending anything) is an observation; {threshold} \
         for the same host and fingerprint within the window make a suspect.</p>\
         <h2>Suspects</h2>"
    );
    out.push_str(&suspects(&r.suspects, caller));
    out.push_str("<h2>Learned bypasses</h2>");
    if r.learned.is_empty() {
        out.push_str("<p>None.</p>");
    } else {
        out.push_str("<table id=\"learned\"><tr><th>Host</th><th>Fingerprint</th><th>App</th><th>Evidence</th><th>Expires</th></tr>");
        for l in &r.learned {
            out.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&l.host),
                esc(l.ja4.as_deref().unwrap_or("all clients")),
                esc(l.app.as_deref().unwrap_or("-")),
                l.evidence_count,
                fmt_unix(l.expires)
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Approved exceptions</h2>");
    if r.approved.is_empty() {
        out.push_str("<p>None.</p>");
    } else {
        out.push_str("<table id=\"approved\"><tr><th>Host</th><th>Scope</th><th>Fingerprint</th><th>Evidence</th><th>By</th><th>When</th><th>Note</th></tr>");
        for a in &r.approved {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.host),
                a.scope.as_str(),
                esc(a.ja4.as_deref().unwrap_or("all clients")),
                a.evidence.observations,
                esc(&a.actor),
                fmt_unix(a.ts),
                esc(&a.note)
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Rejected hosts</h2>");
    if r.rejected.is_empty() {
        out.push_str("<p>None.</p>");
    } else {
        out.push_str(
            "<table id=\"rejected\"><tr><th>Host</th><th>By</th><th>When</th><th>Note</th></tr>",
        );
        for x in &r.rejected {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&x.host),
                esc(&x.actor),
                fmt_unix(x.ts),
                esc(&x.note)
            ));
        }
        out.push_str("</table>");
    }
    out
}

fn suspects(list: &[Suspect], caller: &Caller) -> String {
    if list.is_empty() {
        return "<p id=\"no-suspects\">No suspects.</p>".into();
    }
    let mut t = String::from(
        "<table id=\"suspects\"><tr><th>Host</th><th>App</th><th>Fingerprint (JA4)</th>\
         <th>Count</th><th>Signals</th><th>Clients</th><th>Seen</th><th>Status</th><th>Action</th></tr>",
    );
    for s in list {
        let signals: Vec<String> = s
            .signals
            .iter()
            .map(|c| format!("{}&nbsp;×{}", esc(&c.signal), c.count))
            .collect();
        let clients: Vec<String> = s.clients.iter().map(|c| esc(c)).collect();
        t.push_str(&format!(
            "<tr class=\"suspect\" data-host=\"{host}\"><td>{host}</td><td>{}</td><td><code>{}</code></td>\
             <td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{} – {}</td><td class=\"status\">{}</td><td>{}</td></tr>",
            esc(s.app.as_deref().unwrap_or("-")),
            esc(&s.ja4),
            s.count,
            signals.join("<br>"),
            clients.join("<br>"),
            fmt_unix(s.first_seen),
            fmt_unix(s.last_seen),
            s.status.as_str(),
            actions(s, caller),
            host = esc(&s.host),
        ));
    }
    t.push_str("</table>");
    t
}

fn actions(s: &Suspect, caller: &Caller) -> String {
    let host = esc(&s.host);
    let mut out = String::new();
    if s.status != SuspectStatus::Approved {
        out.push_str(&format!(
            "<form class=\"inline approve\" method=\"post\" action=\"/pinning/approve\" data-host=\"{host}\">{}\
             <input type=\"hidden\" name=\"host\" value=\"{host}\">\
             <input type=\"hidden\" name=\"ja4\" value=\"{}\">\
             <select name=\"scope\"><option value=\"fingerprint\" selected>this fingerprint</option>\
             <option value=\"host\">every client</option></select> \
             <input name=\"note\" placeholder=\"note\" size=\"14\"> \
             <button type=\"submit\" class=\"approve\">Approve</button></form>",
            csrf_field(caller),
            esc(&s.ja4)
        ));
    }
    if s.status != SuspectStatus::Rejected {
        out.push_str(&format!(
            "<form class=\"inline reject\" method=\"post\" action=\"/pinning/reject\" data-host=\"{host}\">{}\
             <input type=\"hidden\" name=\"host\" value=\"{host}\">\
             <input name=\"note\" placeholder=\"note\" size=\"14\"> \
             <button type=\"submit\" class=\"reject\">Reject</button></form>",
            csrf_field(caller)
        ));
    }
    out
}
