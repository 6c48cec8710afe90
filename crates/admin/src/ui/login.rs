//! Logging in to the UI: the admin pastes the token once and gets an `HttpOnly`,
//! `SameSite=Strict` session cookie (the token itself never sits in the browser), `Secure` too
//! when the listener is HTTPS (the browser then never sends it over plain HTTP, security matrix
//! HC-04), and logs out by ending the session.

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::{esc, page as layout, with_status, Nav};
use crate::audit::AuditEvent;
use crate::auth::{auth_failed, session_cookie, Caller, Https, SESSION_COOKIE, SESSION_TTL};
use crate::AdminState;

/// The login form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    /// The admin token.
    #[serde(default)]
    pub token: String,
}

/// `GET /login`.
pub async fn page() -> Response {
    render(None, StatusCode::OK)
}

/// The login page, optionally with an error, under `status`.
pub fn render(error: Option<&str>, status: StatusCode) -> Response {
    let err = error
        .map(|e| format!("<p class=\"err\" id=\"login-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Log in</h1>{err}\
         <p>Paste the admin token: the file <code>admin.token</code> in the gateway's data \
         directory, or the file named by <code>admin.token_file</code>.</p>\
         <form method=\"post\" action=\"/login\">\
         <label>Admin token <input type=\"password\" name=\"token\" id=\"token\" \
         autocomplete=\"off\" size=\"70\" required></label> \
         <button type=\"submit\" id=\"login\">Log in</button></form>"
    );
    with_status(status, layout("Log in", Nav::Login, None, &body))
}

/// `POST /login`.
pub async fn submit(
    State(s): State<AdminState>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    https: Option<Extension<Https>>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let ip = peer.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |Extension(c)| {
        c.0.ip()
    });
    let Ok(Form(form)) = form else {
        return render(Some("The form could not be read."), StatusCode::BAD_REQUEST);
    };
    if !s.shared.settings.token.verify(&form.token) {
        auth_failed(&s.shared, ip, "/login", "wrong token at login");
        return render(
            Some("That is not the admin token."),
            StatusCode::UNAUTHORIZED,
        );
    }
    let (id, _csrf) = s.shared.sessions.open();
    let event = AuditEvent {
        request_id: s.shared.audit.request_id(),
        actor: "admin-ui".into(),
        action: "session.login",
        client: Some(ip.to_string()),
        ..AuditEvent::default()
    };
    // A login changes nothing in the gateway: a failed audit write is logged, not fatal.
    let _ = s.shared.audit.record(event).await;
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        secure(https.is_some())
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// `POST /logout` (CSRF-checked by the guard).
pub async fn logout(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    https: Option<Extension<Https>>,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = session_cookie(&headers) {
        s.shared.sessions.close(&id);
    }
    let event = AuditEvent {
        request_id: s.shared.audit.request_id(),
        actor: caller.actor().into(),
        action: "session.logout",
        ..AuditEvent::default()
    };
    let _ = s.shared.audit.record(event).await;
    let cookie = format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure(https.is_some())
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

/// The cookie attribute for the HTTPS listener. Plain HTTP (the loopback listener) cannot set
/// it: browsers drop a `Secure` cookie set over `http://` (RFC 6265bis §5.7).
fn secure(https: bool) -> &'static str {
    if https {
        "; Secure"
    } else {
        ""
    }
}
