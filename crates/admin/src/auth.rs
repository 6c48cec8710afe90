//! Who may call what: the guard in front of every admin route, UI sessions and their CSRF
//! tokens, and the limiter on failed token attempts (security matrix AD-01, AD-03, AD-05).
//!
//! The guard's order matters: public routes first (devices fetch the PAC file and the CA
//! before anyone logs in), then the `Host` allow-list and the `Origin` check (they refuse
//! browser-borne requests whatever credentials ride along), then authentication, then CSRF for
//! cookie-authenticated state changes. Bearer calls need no CSRF token: a browser never adds an
//! `Authorization` header to a cross-site request without a CORS preflight, which we never
//! answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AdminState, Shared, BODY_LIMIT};

/// Name of the UI session cookie.
pub const SESSION_COOKIE: &str = "sluice_session";
/// Header carrying the CSRF token of a cookie-authenticated API call.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Form field carrying the CSRF token of a UI form.
pub const CSRF_FIELD: &str = "csrf";
/// Lifetime of a UI session.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most UI sessions kept; the oldest is dropped beyond it.
const MAX_SESSIONS: usize = 256;
/// Failed token attempts allowed per client address and window before it gets 429.
pub const MAX_FAILURES: u32 = 10;
/// The window of [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// A request extension set by the HTTPS admin listener on every request it serves: the
/// session cookie is then `Secure`, the expected `Origin` is `https://` (security matrix
/// HC-04), and the names of the admin certificate are accepted as `Host`.
#[derive(Clone, Copy, Debug)]
pub struct Https;

/// Who made an authenticated request (a request extension set by [`guard`]).
#[derive(Clone, Debug)]
pub enum Caller {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A UI session, with the CSRF token its forms must carry.
    Session {
        /// The session's CSRF token.
        csrf: String,
    },
}

/// Open UI sessions, keyed by the SHA-256 of the cookie value.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], SessionEntry>>,
}

struct SessionEntry {
    csrf: String,
    expires: Instant,
}

/// Failed token attempts per client address.
#[derive(Default)]
pub struct Limiter {
    map: Mutex<HashMap<IpAddr, FailWindow>>,
}

struct FailWindow {
    start: Instant,
    failures: u32,
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

// === impl Caller ===

impl Caller {
    /// The actor recorded with approvals, rejections and audit events.
    pub fn actor(&self) -> &'static str {
        match self {
            Self::Bearer => "admin-api",
            Self::Session { .. } => "admin-ui",
        }
    }

    /// The CSRF token to embed in forms (empty for bearer callers, who need none).
    pub fn csrf(&self) -> &str {
        match self {
            Self::Bearer => "",
            Self::Session { csrf } => csrf,
        }
    }
}

// === impl Sessions ===

impl Sessions {
    /// Opens a session; returns the cookie value and its CSRF token.
    pub fn open(&self) -> (String, String) {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let csrf = hex::encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut map = lock(&self.map);
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            digest(&id),
            SessionEntry {
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        (id, csrf)
    }

    /// The CSRF token of a live session.
    pub fn lookup(&self, id: &str) -> Option<String> {
        let map = lock(&self.map);
        map.get(&digest(id))
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        lock(&self.map).remove(&digest(id));
    }
}

// === impl Limiter ===

impl Limiter {
    /// Whether `ip` used up its failed attempts for the current window.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        lock(&self.map)
            .get(&ip)
            .is_some_and(|w| w.start.elapsed() < FAILURE_WINDOW && w.failures >= MAX_FAILURES)
    }

    /// Counts a failure; returns the count in the current window.
    pub fn fail(&self, ip: IpAddr) -> u32 {
        let mut map = lock(&self.map);
        if map.len() > 4096 {
            // A flood from many addresses: forget closed windows rather than grow.
            map.retain(|_, w| w.start.elapsed() < FAILURE_WINDOW);
        }
        let w = map.entry(ip).or_insert(FailWindow {
            start: Instant::now(),
            failures: 0,
        });
        if w.start.elapsed() >= FAILURE_WINDOW {
            *w = FailWindow {
                start: Instant::now(),
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        w.failures
    }
}

/// The guard in front of every route (see the module doc for the order).
pub async fn guard(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if is_public(req.method(), &path) {
        return next.run(req).await;
    }
    let host = request_host(&req);
    let https = req.extensions().get::<Https>().is_some();
    let allowed = host.as_deref().is_some_and(|h| {
        host_allowed(h) || (https && tls_host_allowed(&s.shared.settings.tls_hosts, h))
    });
    if !allowed {
        return refuse(StatusCode::MISDIRECTED_REQUEST, "Host not allowed");
    }
    if !same_origin(req.headers(), host.as_deref().unwrap_or_default(), https) {
        return refuse(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    let ip = client_ip(&req);
    let bearer = req.headers().contains_key(header::AUTHORIZATION);
    let token_attempt = bearer || (path == "/login" && req.method() == Method::POST);
    if token_attempt && s.shared.limiter.blocked(ip) {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed attempts; wait a minute",
        );
    }
    let login_method = matches!(*req.method(), Method::GET | Method::HEAD | Method::POST);
    if path == "/login" && login_method {
        return next.run(req).await;
    }
    let caller = if bearer {
        if !bearer_ok(req.headers(), &s.shared.settings.token) {
            auth_failed(&s.shared, ip, &path, "wrong bearer token");
            return unauthorized(&path);
        }
        Caller::Bearer
    } else {
        let cookie = session_cookie(req.headers());
        match cookie
            .as_deref()
            .and_then(|id| s.shared.sessions.lookup(id))
        {
            Some(csrf) => Caller::Session { csrf },
            None => {
                if !matches!(*req.method(), Method::GET | Method::HEAD) {
                    let why = if cookie.is_some() {
                        "unknown or expired session"
                    } else {
                        "no credentials"
                    };
                    anonymous_attempt(&s.shared, ip, &path, why);
                }
                return unauthorized(&path);
            }
        }
    };
    let mut req = match csrf_checked(req, &caller).await {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Records a failed token attempt: counted, logged and audited until the client's window is
/// used up (then only counted, so a flood cannot flood the log either).
pub(crate) fn auth_failed(shared: &Shared, ip: IpAddr, path: &str, why: &'static str) {
    shared.auth_failures.inc();
    let n = shared.limiter.fail(ip);
    if n <= MAX_FAILURES {
        tracing::warn!(client = %ip, path, why, failures = n, "Admin authentication failed");
        shared.audit.auth_failure(ip, path, why);
    }
    if n == MAX_FAILURES {
        tracing::warn!(client = %ip, window_secs = FAILURE_WINDOW.as_secs(), "Admin token attempts rate-limited");
    }
}

/// Records a state-changing call that came without valid credentials (AD-05): audited, up to
/// [`MAX_FAILURES`] per address and window so a flood cannot flood the trail. It does not
/// count towards the token lockout: there was no token to guess, and a local script without
/// one must not lock the administrator out.
fn anonymous_attempt(shared: &Shared, ip: IpAddr, path: &str, why: &'static str) {
    shared.auth_failures.inc();
    if shared.anonymous.fail(ip) <= MAX_FAILURES {
        tracing::warn!(client = %ip, path, why, "Admin call without credentials refused");
        shared.audit.auth_failure(ip, path, why);
    }
}

/// Whether a request is one of the public ones.
pub fn is_public(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && matches!(
            path,
            "/live" | "/ready" | "/proxy.pac" | "/ca.pem" | "/ca.der"
        )
}

/// The `Host` of a request (header, else the URI's authority).
pub(crate) fn request_host(req: &Request) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
}

/// The DNS-rebinding defence: a page of `http://evil.test` that rebinds its name to 127.0.0.1
/// still sends `Host: evil.test`, so only IP literals and `localhost` are accepted.
pub fn host_allowed(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// Over HTTPS, a DNS name the admin certificate covers (`admin.tls_names`) is accepted too: a
/// rebinding page cannot send it, since it would have to be served under that name with a
/// certificate the browser trusts.
fn tls_host_allowed(names: &[String], host: &str) -> bool {
    let name = host_name(host);
    let name = name.strip_suffix('.').unwrap_or(name);
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The name part of a `Host` value: `[::1]:9128` → `::1`, `localhost:9128` → `localhost`.
pub(crate) fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// A request from a browser page of another origin (or site) is refused whatever it carries.
/// The listener's own origin is its scheme (`https` on the HTTPS listener, else `http`) and the
/// `Host` the request came with (RFC 6454 §4: scheme, host and port all count, so the `http://`
/// spelling of the HTTPS listener is another origin).
fn same_origin(headers: &HeaderMap, host: &str, https: bool) -> bool {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    let scheme = if https { "https" } else { "http" };
    let origin_ok = match headers.get(header::ORIGIN) {
        None => true,
        Some(o) => o
            .to_str()
            .is_ok_and(|o| o.eq_ignore_ascii_case(&format!("{scheme}://{host}"))),
    };
    origin_ok && !cross_site
}

fn bearer_ok(headers: &HeaderMap, token: &crate::Token) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, presented)) if scheme.eq_ignore_ascii_case("bearer") => {
            token.verify(presented)
        }
        _ => false,
    }
}

/// The session cookie's value, if sent.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Checks the CSRF token of a cookie-authenticated state change: from the header, else from
/// the form body (buffered, within [`BODY_LIMIT`], and handed on intact).
async fn csrf_checked(req: Request, caller: &Caller) -> Result<Request, Response> {
    let Caller::Session { csrf } = caller else {
        return Ok(req);
    };
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok(req);
    }
    if let Some(sent) = req.headers().get(CSRF_HEADER) {
        return if ct_eq(sent.as_bytes(), csrf.as_bytes()) {
            Ok(req)
        } else {
            Err(refuse(StatusCode::FORBIDDEN, "CSRF token mismatch"))
        };
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(refuse(StatusCode::FORBIDDEN, "CSRF token required"));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))?;
    let probe = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    let sent = Form::<CsrfForm>::from_request(probe, &())
        .await
        .map(|Form(f)| f.csrf)
        .unwrap_or_default();
    if !ct_eq(sent.as_bytes(), csrf.as_bytes()) {
        return Err(refuse(StatusCode::FORBIDDEN, "CSRF token missing or wrong"));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// 401 with a challenge: JSON for API paths, a page pointing at the login form for the UI.
pub(crate) fn unauthorized(path: &str) -> Response {
    let challenge = [(header::WWW_AUTHENTICATE, "Bearer realm=\"sluice-admin\"")];
    if path.starts_with("/api") || path == "/metrics" {
        let body = Json(
            json!({ "error": "authentication required: Authorization: Bearer <admin token>" }),
        );
        return (StatusCode::UNAUTHORIZED, challenge, body).into_response();
    }
    let page = crate::ui::login::render(None, StatusCode::UNAUTHORIZED);
    (challenge, page).into_response()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// A poisoned lock only means a panic elsewhere mid-update of a cache; the data stays usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
