//! The admin listener: health endpoints, the CA download and (as the product grows) the JSON
//! API, web UI, Prometheus metrics and PAC file. `router(state)` returns an axum `Router` so
//! handlers are testable with `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use sluice_proxy::Runtime;

/// What the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    /// The running gateway.
    pub rt: Arc<Runtime>,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/live", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/ca.pem", get(ca_pem))
        .route("/ca.der", get(ca_der))
        .with_state(state)
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    let active = s.rt.stats.active.load(std::sync::atomic::Ordering::Relaxed);
    (
        StatusCode::OK,
        format!("ready active_connections={active}\n"),
    )
}

async fn ca_pem(State(s): State<AdminState>) -> impl IntoResponse {
    let pem = s.rt.minter.ca().cert_pem().to_string();
    ([(header::CONTENT_TYPE, "application/x-pem-file")], pem)
}

async fn ca_der(State(s): State<AdminState>) -> impl IntoResponse {
    let der = s.rt.minter.ca().cert_der().to_vec();
    ([(header::CONTENT_TYPE, "application/x-x509-ca-cert")], der)
}
