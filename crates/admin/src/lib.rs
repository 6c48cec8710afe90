//! The admin listener: health endpoints, the CA download, the PAC file, Prometheus metrics, the
//! JSON API and a server-rendered web UI. [`router`] returns an axum `Router`, so every handler
//! is testable with `tower::ServiceExt::oneshot`.
//!
//! Security model (security matrix AD-01…AD-05, docs/admin-api.md):
//! - public: `GET`/`HEAD` of `/live`, `/ready`, `/proxy.pac`, `/ca.pem`, `/ca.der` (what
//!   devices fetch before anyone logs in), and the login page;
//! - everything else — any other path, known or not, and any other method — needs the admin
//!   [`token::Token`] as `Authorization: Bearer`, or a UI session opened with it ([`auth`]);
//! - state-changing calls made with a session cookie need its CSRF token; a foreign `Origin`,
//!   a cross-site fetch or a `Host` that is not an IP literal or `localhost` (DNS rebinding)
//!   is refused before authentication; no CORS headers are ever sent and no page may be framed.
//!
//! Nothing here runs on the proxy data path: handlers read the runtime's snapshots, the access
//! log's recent-records buffer and the event store (on blocking threads).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use sluice_policy::catalog::Catalog;
use sluice_proxy::Runtime;

pub mod api;
pub mod audit;
pub mod auth;
pub mod check;
pub mod error;
pub mod metrics;
pub mod pac;
pub mod policy;
pub mod token;
pub mod ui;

mod summary;
#[cfg(test)]
mod tests;

pub use error::{ApiError, BODY_LIMIT};
pub use token::{Token, TokenError, TokenSource};

/// The OpenAPI document of the JSON API (served at `/api/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// How the admin listener was set up, beyond the runtime.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The admin token.
    pub token: Token,
    /// Where the token came from (shown in the config summary).
    pub token_source: TokenSource,
    /// The proxy listeners' bound addresses (what the PAC file points at).
    pub proxy_addrs: Vec<SocketAddr>,
    /// The admin listener's bound address.
    pub admin_addr: Option<SocketAddr>,
    /// Append-only audit log of admin actions (`<data-dir>/admin-audit.jsonl`); `None` keeps
    /// the audit in the tracing log only.
    pub audit_file: Option<PathBuf>,
    /// `GET`/`PUT`/`DELETE /api/policy` (`None`: the policy is read-only, updates get 503).
    pub policy: Option<policy::PolicyUpdates>,
    /// The data dir whose generated CA `POST /api/ca/rotate` replaces (`None`: rotation is
    /// unavailable, 503).
    pub data_dir: Option<PathBuf>,
    /// DNS names of the HTTPS listener's certificate (`admin.tls_names`), accepted as `Host`
    /// over HTTPS besides IP literals and `localhost`; empty on loopback.
    pub tls_hosts: Vec<String>,
    /// Permission bits the audit trail is created with (`log.mode`, default 0o600).
    pub audit_mode: u32,
}

/// What the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    /// The running gateway.
    pub rt: Arc<Runtime>,
    /// The application catalog (built-in plus `catalog.extra`).
    pub catalog: Arc<Catalog>,
    pub(crate) shared: Arc<Shared>,
}

/// State shared by every request: settings, UI sessions, the failed-login limiter, the audit.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) sessions: auth::Sessions,
    pub(crate) limiter: auth::Limiter,
    /// Caps how many credential-less attempts per address are audited (not a lockout).
    pub(crate) anonymous: auth::Limiter,
    pub(crate) audit: audit::Audit,
    pub(crate) auth_failures: prometheus_client::metrics::counter::Counter,
}

// === impl AdminState ===

impl AdminState {
    /// Assembles the state.
    pub fn new(rt: Arc<Runtime>, catalog: Arc<Catalog>, settings: Settings) -> Self {
        let audit = audit::Audit::new(settings.audit_file.clone(), settings.audit_mode);
        Self {
            rt,
            catalog,
            shared: Arc::new(Shared {
                settings,
                sessions: auth::Sessions::default(),
                limiter: auth::Limiter::default(),
                anonymous: auth::Limiter::default(),
                audit,
                auth_failures: Default::default(),
            }),
        }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }
}

/// The admin router: every route behind the guard ([`auth::guard`]) and the security headers.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/decisions", get(api::decisions))
        .route("/api/check", get(api::check))
        .route("/api/apps", get(api::apps))
        .route("/api/pinning", get(api::pinning))
        .route("/api/pinning/approve", post(api::approve))
        .route("/api/pinning/reject", post(api::reject))
        .route("/api/config", get(api::config))
        .route("/api/ca/rotate", post(api::rotate_ca))
        .route(
            "/api/policy",
            get(policy::get).put(policy::put).delete(policy::delete),
        )
        .route("/api/openapi.json", get(api::openapi));
    let ui = Router::new()
        .route("/", get(ui::dashboard::page))
        .route("/pinning", get(ui::pinning::page))
        .route("/pinning/approve", post(ui::pinning::approve))
        .route("/pinning/reject", post(ui::pinning::reject))
        .route("/tester", get(ui::pages::tester))
        .route("/catalog", get(ui::pages::catalog))
        .route("/ca", get(ui::pages::ca))
        .route("/login", get(ui::login::page).post(ui::login::submit))
        .route("/logout", post(ui::login::logout));
    Router::new()
        .route("/live", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/ca.pem", get(ca_pem))
        .route("/ca.der", get(ca_der))
        .route("/proxy.pac", get(pac::serve))
        .route("/metrics", get(metrics::serve))
        .merge(api)
        .merge(ui)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn(ui::security_headers))
        .with_state(state)
}

/// The router for plain HTTP on a non-loopback admin listener: only the public routes
/// (devices fetch the PAC file and the CA certificate before they trust anything), every other
/// request is refused with `403` and a pointer to HTTPS, so a token never crosses the network
/// in the clear (security matrix AD-01).
pub fn public_only(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(refuse_private_over_http))
}

async fn refuse_private_over_http(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if auth::is_public(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    (
        StatusCode::FORBIDDEN,
        "this admin listener is not on loopback: use https:// (the certificate is signed by the sluice CA, /ca.pem)\n",
    )
        .into_response()
}

/// `GET /ready`: 200 `ready` when everything works, else `degraded` with what is wrong.
/// Without a usable CA, decryption fails closed: 503. While the access log cannot be written
/// and `log.fail = "closed"`, requests are refused: 503; with `"open"` unrecorded traffic is
/// served: 200, saying so.
async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    let active = s.rt.stats.active.load(std::sync::atomic::Ordering::Relaxed);
    let mut problems = Vec::new();
    let mut status = StatusCode::OK;
    if let Some(why) = s.rt.minter.unavailable() {
        problems.push(format!("ca_unavailable=\"{why}\""));
        status = StatusCode::SERVICE_UNAVAILABLE;
    }
    if s.rt.log.failing() {
        problems.push("log_unavailable".to_string());
        if s.rt.snapshot.load().config.log_fail == sluice_policy::config::LogFail::Closed {
            status = StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    if problems.is_empty() {
        return (status, format!("ready active_connections={active}\n"));
    }
    (
        status,
        format!(
            "degraded {} active_connections={active}\n",
            problems.join(" ")
        ),
    )
}

/// `GET /ca.pem`: what devices must trust — the CA, or the root at the end of a `[ca] cert`
/// chain file (security matrix HC-10), never the intermediate that signs.
async fn ca_pem(State(s): State<AdminState>) -> impl IntoResponse {
    let pem = s.rt.minter.ca().trust_pem().to_string();
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sluice-ca.pem\"",
            ),
        ],
        pem,
    )
}

/// `GET /ca.der`: [`ca_pem`] as DER.
async fn ca_der(State(s): State<AdminState>) -> impl IntoResponse {
    let der = s.rt.minter.ca().trust_der().to_vec();
    (
        [
            (header::CONTENT_TYPE, "application/x-x509-ca-cert"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sluice-ca.cer\"",
            ),
        ],
        der,
    )
}

/// Reached only by authenticated callers (the guard answers 401 first).
async fn not_found() -> ApiError {
    ApiError::NotFound
}
