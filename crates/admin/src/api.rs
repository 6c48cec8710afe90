//! The JSON API (documented in `openapi.json` and docs/admin-api.md). Inputs are parsed
//! strictly — unknown fields and parameters are refused — and every refusal is a 400/413/415
//! with `{"error": ...}`. Pinning approvals and rejections have the CLI's effect (the same store
//! calls) and are audited before they are acknowledged.

use std::time::SystemTime;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_store::{Approval, Rejection, Scope, Store, SuspectRule};

use crate::audit::AuditEvent;
use crate::auth::Caller;
use crate::check::{unix_now, CheckParams};
use crate::{AdminState, ApiError};

/// Most records `GET /api/decisions` returns.
pub const MAX_DECISIONS: usize = sluice_proxy::log::RECENT;
/// Longest note accepted with an approval or rejection.
pub const MAX_NOTE: usize = 1000;

/// `GET /api/decisions` parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionsQuery {
    /// `decrypt`, `bypass` or `block`.
    #[serde(default)]
    pub decision: Option<String>,
    /// Substring of the host or SNI (case-insensitive).
    #[serde(default)]
    pub host: Option<String>,
    /// Proxy user, exactly.
    #[serde(default)]
    pub user: Option<String>,
    /// `connect` or `request`.
    #[serde(default)]
    pub kind: Option<String>,
    /// How many, newest first (default 100, at most 2000).
    #[serde(default)]
    pub limit: Option<String>,
}

/// `POST /api/pinning/approve` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The host.
    pub host: String,
    /// `fingerprint` (default) or `host`.
    #[serde(default)]
    pub scope: Option<String>,
    /// The fingerprint, when the host was seen with several.
    #[serde(default)]
    pub ja4: Option<String>,
    /// Why.
    #[serde(default)]
    pub note: String,
}

/// `POST /api/pinning/reject` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// The host.
    pub host: String,
    /// Why.
    #[serde(default)]
    pub note: String,
}

/// `GET /api/decisions`: recent access-log records, newest first.
pub async fn decisions(
    State(s): State<AdminState>,
    q: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let records = filter_decisions(&s, &q)?;
    Ok(Json(json!({ "count": records.len(), "records": records })))
}

/// The filtering behind `GET /api/decisions` (records as their access-log JSON, whose field
/// names are the stable interface).
pub fn filter_decisions(s: &AdminState, q: &DecisionsQuery) -> Result<Vec<Value>, ApiError> {
    let decision = present(&q.decision);
    if let Some(d) = decision {
        if !matches!(d, "decrypt" | "bypass" | "block") {
            return Err(ApiError::BadRequest(
                "`decision` must be decrypt, bypass or block".into(),
            ));
        }
    }
    let kind = present(&q.kind);
    if let Some(k) = kind {
        if !matches!(k, "connect" | "request") {
            return Err(ApiError::BadRequest(
                "`kind` must be connect or request".into(),
            ));
        }
    }
    let limit = match present(&q.limit) {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_DECISIONS).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("`limit` must be 1..={MAX_DECISIONS}")))?,
    };
    let host = present(&q.host).map(str::to_ascii_lowercase);
    let user = present(&q.user);
    let field = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
    let out =
        s.rt.log
            .recent()
            .iter()
            .rev()
            .filter_map(|r| serde_json::to_value(r).ok())
            .filter(|r| decision.is_none_or(|d| field(r, "decision").as_deref() == Some(d)))
            .filter(|r| kind.is_none_or(|k| field(r, "kind").as_deref() == Some(k)))
            .filter(|r| user.is_none_or(|u| field(r, "user").as_deref() == Some(u)))
            .filter(|r| {
                host.as_deref().is_none_or(|h| {
                    ["host", "sni"]
                        .iter()
                        .filter_map(|k| field(r, k))
                        .any(|v| v.to_ascii_lowercase().contains(h))
                })
            })
            .take(limit)
            .collect();
    Ok(out)
}

/// `GET /api/check`: the JSON of `sluice check --json`, from the running gateway.
pub async fn check(
    State(s): State<AdminState>,
    q: Result<Query<CheckParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    crate::check::check(&s.rt, &q).map(Json)
}

/// `GET /api/apps`: the catalog, as `sluice apps list --json`.
pub async fn apps(State(s): State<AdminState>) -> Json<Value> {
    Json(Value::Array(
        s.catalog.apps().iter().map(app_json).collect(),
    ))
}

/// One catalog application as `sluice apps show --json` prints it.
pub fn app_json(app: &sluice_policy::catalog::App) -> Value {
    let domains: Vec<&str> = app.all_domains().map(|d| d.pattern.as_str()).collect();
    let services: Vec<Value> = app
        .services
        .iter()
        .map(|s| json!({"name": s.name, "domains": s.domains.iter().map(|d| &d.pattern).collect::<Vec<_>>()}))
        .collect();
    json!({
        "id": app.id,
        "name": app.name,
        "vendor": app.vendor,
        "category": app.category,
        "global_bypass": app.global_bypass,
        "pinning": app.pinning,
        "domains": domains,
        "services": services,
        "sources": app.sources,
        "verified": app.verified,
    })
}

/// `GET /api/pinning`: suspects, learned bypasses, approvals and rejections, as
/// `sluice pinning list --json`.
pub async fn pinning(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    pinning_state(&s).await.map(Json)
}

/// The pinning review state.
pub async fn pinning_state(s: &AdminState) -> Result<Value, ApiError> {
    let rule = suspect_rule(s);
    with_store(s, move |store| {
        let now = unix_now();
        Ok(json!({
            "suspects": store.suspects(rule, now)?,
            "learned": store.learned(now)?,
            "approved": store.approvals()?,
            "rejected": store.rejections()?,
        }))
    })
    .await
}

/// `POST /api/pinning/approve`.
pub async fn approve(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<ApproveRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body?;
    let (approval, id) = do_approve(&s, &caller, body).await?;
    Ok((
        [(header::HeaderName::from_static("x-request-id"), id)],
        Json(approval),
    ))
}

/// `POST /api/pinning/reject`.
pub async fn reject(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<RejectRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body?;
    let (rejection, id) = do_reject(&s, &caller, body).await?;
    Ok((
        [(header::HeaderName::from_static("x-request-id"), id)],
        Json(rejection),
    ))
}

/// Approves (shared by the API and the UI form): validates, writes, audits.
pub async fn do_approve(
    s: &AdminState,
    caller: &Caller,
    req: ApproveRequest,
) -> Result<(Approval, String), ApiError> {
    let host = normalise_host(&req.host)?;
    let scope: Scope = present(&req.scope)
        .unwrap_or("fingerprint")
        .parse()
        .map_err(|_| ApiError::BadRequest("`scope` must be host or fingerprint".into()))?;
    let note = checked_note(&req.note)?;
    let ja4 = present(&req.ja4).map(str::to_owned);
    if ja4.as_ref().is_some_and(|j| j.len() > 200) {
        return Err(ApiError::BadRequest("`ja4` is too long".into()));
    }
    let actor = caller.actor();
    let (h, n, j) = (host.clone(), note.clone(), ja4.clone());
    let (approval, before, after) = with_store(s, move |store| {
        let before = store.exceptions_version()?;
        let a = store.approve(&h, scope, j.as_deref(), &n, actor, unix_now())?;
        Ok((a, before, store.exceptions_version()?))
    })
    .await?;
    let request_id = s.shared.audit.request_id();
    let event = AuditEvent {
        request_id: request_id.clone(),
        actor: actor.into(),
        action: "pinning.approve",
        host: Some(host),
        scope: Some(scope.as_str().into()),
        ja4: approval.ja4.clone(),
        note: Some(note),
        version_before: Some(before),
        version_after: Some(after),
        // Pinning decisions do not change the policy list; the hash says which one was in
        // force when the decision was taken.
        policy_before: Some(policy_hash(s)),
        policy_after: Some(policy_hash(s)),
        ..AuditEvent::default()
    };
    s.shared.audit.record(event).await?;
    Ok((approval, request_id))
}

/// Rejects (shared by the API and the UI form): validates, writes, audits.
pub async fn do_reject(
    s: &AdminState,
    caller: &Caller,
    req: RejectRequest,
) -> Result<(Rejection, String), ApiError> {
    let host = normalise_host(&req.host)?;
    let note = checked_note(&req.note)?;
    let actor = caller.actor();
    let (h, n) = (host.clone(), note.clone());
    let (rejection, before, after) = with_store(s, move |store| {
        let before = store.exceptions_version()?;
        let r = store.reject(&h, &n, actor, unix_now())?;
        Ok((r, before, store.exceptions_version()?))
    })
    .await?;
    let request_id = s.shared.audit.request_id();
    let event = AuditEvent {
        request_id: request_id.clone(),
        actor: actor.into(),
        action: "pinning.reject",
        host: Some(host),
        note: Some(note),
        version_before: Some(before),
        version_after: Some(after),
        // Pinning decisions do not change the policy list; the hash says which one was in
        // force when the decision was taken.
        policy_before: Some(policy_hash(s)),
        policy_after: Some(policy_hash(s)),
        ..AuditEvent::default()
    };
    s.shared.audit.record(event).await?;
    Ok((rejection, request_id))
}

/// `GET /api/config`: the configuration summary.
pub async fn config(State(s): State<AdminState>) -> Json<Value> {
    Json(crate::summary::config_summary(&s))
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI)
}

/// The suspect rule of the current config.
pub fn suspect_rule(s: &AdminState) -> SuspectRule {
    let cfg = &s.rt.snapshot.load().config.pinning;
    SuspectRule {
        threshold: cfg.threshold,
        window_secs: i64::try_from(cfg.window.as_secs()).unwrap_or(i64::MAX),
    }
}

/// Runs a store call on a blocking thread (SQLite waits on locks and fsyncs).
pub async fn with_store<T, F>(s: &AdminState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, sluice_store::StoreError> + Send + 'static,
{
    let store =
        s.rt.pinning
            .as_ref()
            .map(|p| p.store.clone())
            .ok_or(ApiError::NoStore)?;
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::join(&e))?
        .map_err(ApiError::store)
}

fn normalise_host(host: &str) -> Result<String, ApiError> {
    sluice_policy::name::DomainName::parse(host.trim())
        .map(|d| d.to_string())
        .map_err(|e| ApiError::BadRequest(format!("`host` is not a host name: {e}")))
}

fn checked_note(note: &str) -> Result<String, ApiError> {
    if note.chars().count() > MAX_NOTE {
        return Err(ApiError::BadRequest(format!(
            "`note` is longer than {MAX_NOTE} characters"
        )));
    }
    if note
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::BadRequest(
            "`note` contains control characters".into(),
        ));
    }
    Ok(note.trim().to_owned())
}

fn policy_hash(s: &AdminState) -> String {
    sluice_policy::config::policy_hash(&s.rt.snapshot.load().config.policies)
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Unix seconds of a `SystemTime` (for pages that format store times).
pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `POST /api/ca/rotate` answer.
#[derive(Debug, Serialize)]
pub struct Rotated {
    /// SHA-256 fingerprint of the new CA certificate.
    pub fingerprint: String,
    /// The one it replaced (its key is destroyed).
    pub previous: String,
    /// The new certificate's notAfter (RFC 3339).
    pub not_after: String,
    /// Where clients fetch the new certificate to trust.
    pub download: &'static str,
}

/// `POST /api/ca/rotate`: a new CA for the data dir, used for every handshake from now on
/// (the leaf cache is emptied); the old key is overwritten and removed (security matrix
/// CK-05). Clients must trust the new certificate (`/ca.pem`) before they see it.
pub async fn rotate_ca(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    if s.rt.snapshot.load().config.ca.cert.is_some() {
        return Err(ApiError::Conflict(
            "the CA comes from [ca] cert and key: replace those files and reload (SIGHUP) instead"
                .into(),
        ));
    }
    let Some(data_dir) = s.shared.settings.data_dir.clone() else {
        return Err(ApiError::Unavailable(
            "CA rotation is not available here".into(),
        ));
    };
    let previous = s.rt.minter.ca().fingerprint().to_string();
    let ca = tokio::task::spawn_blocking(move || sluice_tls::ca::Ca::rotate(&data_dir))
        .await
        .map_err(|e| ApiError::join(&e))?
        .map_err(|e| {
            tracing::error!(error = %e, "CA rotation failed");
            ApiError::Internal("CA rotation")
        })?;
    let fingerprint = ca.fingerprint().to_string();
    let not_after = ca
        .not_after()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    s.rt.minter.replace(std::sync::Arc::new(ca));
    let request_id = s.shared.audit.request_id();
    s.shared
        .audit
        .record(AuditEvent {
            request_id: request_id.clone(),
            actor: caller.actor().into(),
            action: "ca.rotate",
            ca_before: Some(previous.clone()),
            ca_after: Some(fingerprint.clone()),
            ..AuditEvent::default()
        })
        .await?;
    Ok((
        [(header::HeaderName::from_static("x-request-id"), request_id)],
        Json(Rotated {
            fingerprint,
            previous,
            not_after,
            download: "/ca.pem",
        }),
    ))
}
