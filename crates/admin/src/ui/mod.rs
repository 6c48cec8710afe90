//! The server-rendered web UI: plain HTML forms and a little CSS, no JavaScript at all (the
//! Content-Security-Policy forbids scripts outright), an inline SVG for the chart.
//!
//! Everything that comes from outside — hosts, SNI, users, notes, catalog text, query
//! parameters — goes through [`esc`] before it reaches a page: access-log records carry what
//! hostile clients sent.

use std::sync::LazyLock;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::auth::{Caller, CSRF_FIELD};

pub mod dashboard;
pub mod login;
pub mod pages;
pub mod pinning;

/// The one stylesheet, inlined in every page and allowed by its hash in the CSP.
pub const STYLE: &str = "\
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}\
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}\
header a{color:#cfd6e4;text-decoration:none}header a.on{color:#fff;font-weight:600}\
header strong{margin-right:1em}header form{margin-left:auto}\
main{padding:1em 1.5em;max-width:1200px}\
h1{font-size:1.35em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;background:#fff;width:100%;margin:.5em 0}\
th,td{border:1px solid #dde1e8;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#eef0f4}td.n{text-align:right}td{overflow-wrap:anywhere}code{font-size:.92em}\
.card{background:#fff;border:1px solid #dde1e8;padding:.8em 1em;display:inline-block;margin:0 .8em .8em 0;min-width:8em}\
.card b{display:block;font-size:1.6em}\
.decrypt{color:#2f5fa8}.bypass{color:#2e8b57}.block{color:#b03a2e}\
.msg{background:#e7f4ea;border:1px solid #9fd3ad;padding:.5em .8em}\
.err{background:#fbeaea;border:1px solid #e3a6a6;padding:.5em .8em}\
form.inline{display:inline-block;margin:.1em 0}\
input,select,button{font:inherit;padding:.2em .4em}\
pre{background:#fff;border:1px solid #dde1e8;padding:.6em;overflow:auto}\
";

/// The Content-Security-Policy of every response: nothing but the inline stylesheet (by hash),
/// forms posting back to us, and no framing (security matrix AD-03).
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
});

/// The UI's sections, for the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Dashboard.
    Dashboard,
    /// Pinning review.
    Pinning,
    /// Policy tester.
    Tester,
    /// Catalog.
    Catalog,
    /// CA.
    Ca,
    /// Login (no navigation).
    Login,
}

/// Adds the security headers to every response, public ones included.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&CSP) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it browsers send `Origin: null` with our own form posts, which
    // the Origin check must refuse. `same-origin` keeps URLs from leaking to other sites.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: layout, navigation (with the logout form for sessions) and `body`.
pub fn page(title: &str, nav: Nav, caller: Option<&Caller>, body: &str) -> Html<String> {
    let link = |n: Nav, href: &str, label: &str| {
        let class = if n == nav { " class=\"on\"" } else { "" };
        format!("<a href=\"{href}\"{class}>{label}</a>")
    };
    let mut header = String::from("<strong>sluice</strong>");
    if nav != Nav::Login {
        header.push_str(&link(Nav::Dashboard, "/", "Dashboard"));
        header.push_str(&link(Nav::Pinning, "/pinning", "Pinning review"));
        header.push_str(&link(Nav::Tester, "/tester", "Policy tester"));
        header.push_str(&link(Nav::Catalog, "/catalog", "Catalog"));
        header.push_str(&link(Nav::Ca, "/ca", "CA certificate"));
    }
    if let Some(c @ Caller::Session { .. }) = caller {
        header.push_str(&format!(
            "<form method=\"post\" action=\"/logout\">{}<button id=\"logout\">Log out</button></form>",
            csrf_field(c)
        ));
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · sluice</title><style>{STYLE}</style></head>\
         <body><header>{header}</header><main>{body}</main></body></html>",
        esc(title)
    ))
}

/// The hidden CSRF field of a form.
pub fn csrf_field(caller: &Caller) -> String {
    format!(
        "<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
        esc(caller.csrf())
    )
}

/// A page with a status other than 200.
pub fn with_status(status: StatusCode, html: Html<String>) -> Response {
    (status, html).into_response()
}

/// `2026-11-27 18:19:09 UTC` for unix seconds.
pub fn fmt_unix(ts: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .map_or_else(|| ts.to_string(), |s| format!("{s} UTC"))
}

/// A decision word with its colour class.
pub fn decision_badge(d: &str) -> String {
    let class = match d {
        "decrypt" | "bypass" | "block" => d,
        _ => "",
    };
    format!("<b class=\"{class}\">{}</b>", esc(d))
}
