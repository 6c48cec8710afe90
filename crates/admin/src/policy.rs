//! `GET`, `PUT` and `DELETE /api/policy`: read and replace the policy list of the running
//! gateway (security matrix AD-04, AD-05).
//!
//! A `PUT` is all or nothing. The body (at most [`POLICY_BODY_LIMIT`], any content type, so
//! `curl --data @policy.json` works) is parsed strictly and handed to the
//! [`PolicyBackend`] — the binary's own reload path — which validates the policies with the
//! configuration file's parser and converter and builds a complete new snapshot. Only when
//! that succeeded is the change audited (fsynced), persisted to `<data-dir>/policy.json`
//! (temp file, fsync, rename, directory fsync: a crash leaves the old file or the new one) and
//! swapped in with one atomic pointer store; any error before leaves the old policy in force.
//! `DELETE` removes the file and goes back to the configuration file's `[[policy]]`.
//!
//! Precedence (docs/admin-api.md): when `<data-dir>/policy.json` exists it replaces the
//! configuration file's `[[policy]]` list, at start and on every reload.
//!
//! Not here: parsing policies (sluice-policy) or building snapshots (the binary).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_policy::config::{policies_to_json, policy_hash, Config};
use sluice_proxy::{Runtime, Snapshot};

use crate::audit::{Audit, AuditEvent};
use crate::auth::Caller;
use crate::{AdminState, ApiError};

/// Largest `PUT /api/policy` body (a policy list is bigger than other admin calls).
pub const POLICY_BODY_LIMIT: usize = 1 << 20;

/// How the admin API turns a policy document into a running snapshot: implemented by the
/// binary with exactly the code a reload runs, so the API cannot accept what a restart would
/// refuse.
pub trait PolicyBackend: Send + Sync {
    /// The snapshot the gateway would run with `document` (`{"policies": [...]}`) replacing
    /// the configuration file's `[[policy]]`; `None`: with the file's own policies.
    fn build(&self, document: Option<&str>) -> Result<Snapshot, BuildError>;
}

/// Why [`PolicyBackend::build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The policies are invalid (the message names the key path of each problem).
    #[error("{0}")]
    Invalid(String),
    /// Something other than the policies is wrong (the configuration file no longer loads).
    #[error("{0}")]
    Unavailable(String),
}

/// What the policy routes need from the binary.
#[derive(Clone)]
pub struct PolicyUpdates {
    /// `<data-dir>/policy.json`.
    pub file: PathBuf,
    /// Builds snapshots.
    pub backend: Arc<dyn PolicyBackend>,
    /// Held across check, build, persist and swap, and by every reload, so that a SIGHUP
    /// cannot swap in a snapshot built from the file an update is replacing.
    pub lock: Arc<Mutex<()>>,
}

/// `PUT /api/policy` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    policies: Value,
    /// Optimistic concurrency: the hash the caller last read; 409 when it is stale.
    #[serde(default)]
    if_match: Option<String>,
}

enum Change {
    Replace { document: String },
    Restore,
}

// === impl PolicyUpdates ===

impl fmt::Debug for PolicyUpdates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyUpdates")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// `GET /api/policy`: the effective policy list, where it comes from, and its hash.
pub async fn get(State(s): State<AdminState>) -> Json<Value> {
    Json(view(&s.rt.snapshot.load().config))
}

/// The JSON of `GET /api/policy` for a configuration.
pub fn view(config: &Config) -> Value {
    let source = if config.policy_override.is_some() {
        "api"
    } else {
        "config"
    };
    json!({
        "source": source,
        "hash": policy_hash(&config.policies),
        "policies": policies_to_json(&config.policies),
    })
}

/// `PUT /api/policy`: replaces the policy list.
pub async fn put(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let updates = updates(&s)?;
    let bytes = read_body(&headers, body).await?;
    // serde_json refuses nesting deeper than 128 levels with an error (not a stack overflow),
    // which lands here as a 400 like any other malformed body.
    let parsed: PutBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let document = json!({ "policies": parsed.policies }).to_string();
    let change = Change::Replace { document };
    run(&s, updates, &caller, change, parsed.if_match).await
}

/// `DELETE /api/policy`: drops the API's policy list; the configuration file's applies again.
pub async fn delete(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let updates = updates(&s)?;
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_owned());
    run(&s, updates, &caller, Change::Restore, if_match).await
}

fn updates(s: &AdminState) -> Result<PolicyUpdates, ApiError> {
    s.shared
        .settings
        .policy
        .clone()
        .ok_or_else(|| ApiError::Unavailable("policy updates are not enabled".into()))
}

/// Reads the body within [`POLICY_BODY_LIMIT`]. A declared length over the limit is refused
/// before a byte is read, so a client waiting on `Expect: 100-continue` never sends it.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let too_large = ApiError::TooLarge {
        limit: POLICY_BODY_LIMIT,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > POLICY_BODY_LIMIT as u64) {
        return Err(too_large);
    }
    match Limited::new(body, POLICY_BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large),
        Err(_) => Err(ApiError::BadRequest(
            "could not read the request body".into(),
        )),
    }
}

async fn run(
    s: &AdminState,
    updates: PolicyUpdates,
    caller: &Caller,
    change: Change,
    if_match: Option<String>,
) -> Result<Response, ApiError> {
    let request_id = s.shared.audit.request_id();
    let event = AuditEvent {
        request_id: request_id.clone(),
        actor: caller.actor().into(),
        action: match change {
            Change::Replace { .. } => "policy.replace",
            Change::Restore => "policy.delete",
        },
        ..AuditEvent::default()
    };
    let (rt, audit) = (s.rt.clone(), s.shared.audit.clone());
    let body = tokio::task::spawn_blocking(move || {
        apply(&updates, &rt, &audit, change, if_match.as_deref(), event)
    })
    .await
    .map_err(|e| ApiError::join(&e))??;
    let id = HeaderName::from_static("x-request-id");
    Ok(([(id, request_id)], Json(body)).into_response())
}

/// Check, build, audit, persist, swap — under the lock, on a blocking thread (fsyncs).
fn apply(
    updates: &PolicyUpdates,
    rt: &Runtime,
    audit: &Audit,
    change: Change,
    if_match: Option<&str>,
    event: AuditEvent,
) -> Result<Value, ApiError> {
    let _serial = updates.lock.lock().unwrap_or_else(PoisonError::into_inner);
    let before = policy_hash(&rt.snapshot.load().config.policies);
    if let Some(expected) = if_match.filter(|m| !m.eq_ignore_ascii_case(&before)) {
        return Err(ApiError::Conflict(format!(
            "the policy changed since {expected}: it is now {before}; read it again"
        )));
    }
    let document = match &change {
        Change::Replace { document } => Some(document.as_str()),
        Change::Restore => None,
    };
    let snapshot = updates.backend.build(document).map_err(|e| match e {
        BuildError::Invalid(m) => ApiError::BadRequest(format!("invalid policy: {m}")),
        BuildError::Unavailable(m) => {
            tracing::error!(error = %m, "policy update: the configuration does not load");
            ApiError::Unavailable(
                "the configuration file does not load; fix it first (see the gateway log)".into(),
            )
        }
    })?;
    let after = policy_hash(&snapshot.config.policies);
    let request_id = event.request_id.clone();
    // The record goes first: every change that can be in force, even after a crash right
    // after the rename, has its audit event on disk.
    audit.record_blocking(AuditEvent {
        policy_before: Some(before.clone()),
        policy_after: Some(after.clone()),
        ..event.clone()
    })?;
    let persisted = match change {
        Change::Replace { .. } => {
            let canonical = json!({ "policies": policies_to_json(&snapshot.config.policies) });
            let mut text = serde_json::to_vec_pretty(&canonical)
                .map_err(|_| ApiError::Internal("policy serialisation"))?;
            text.push(b'\n');
            write_atomic(&updates.file, &text)
        }
        Change::Restore => remove_durably(&updates.file),
    };
    if let Err(e) = persisted {
        tracing::error!(error = %e, file = %updates.file.display(), "persisting the policy failed; the old policy stays in force");
        let failed = AuditEvent {
            action: "policy.persist_failed",
            policy_before: Some(before),
            policy_after: Some(after),
            ..event
        };
        let _ = audit.record_blocking(failed);
        return Err(ApiError::Internal("persisting the policy"));
    }
    let mut out = view(&snapshot.config);
    rt.snapshot.store(Arc::new(snapshot));
    tracing::warn!(hash = %after, request_id = %request_id, "policy replaced through the admin API");
    out["previous_hash"] = json!(before);
    out["request_id"] = json!(request_id);
    Ok(out)
}

/// Replaces `path` with `bytes` so that a crash at any point leaves the old or the new
/// content: write a temp file beside it, fsync it, rename it over, fsync the directory (the
/// rename itself is only durable once the directory is).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent(path);
    let name = path.file_name().map_or_else(
        || "policy.json".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    // One writer at a time (the caller holds the update lock), so a fixed name is enough; a
    // leftover from a crash is simply overwritten.
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// Removes `path` (absent is fine) and fsyncs its directory.
pub fn remove_durably(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    File::open(parent(path))?.sync_all()
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}
