//! The audit trail of admin actions (security matrix AD-05): one JSON object per line in
//! `<data-dir>/admin-audit.jsonl`, appended and fsynced *before* the action's 2xx is sent, so
//! an acknowledged approval is always on disk with who did it. Failed token attempts are
//! recorded too (without what was presented). Tokens, cookies and CSRF values never appear.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use crate::ApiError;

/// File name of the audit trail inside the data dir.
pub const AUDIT_FILE: &str = "admin-audit.jsonl";

/// The audit trail.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    file: Option<PathBuf>,
    /// Permission bits of a newly created trail (`log.mode`), set explicitly: not the umask's.
    mode: u32,
    write: Mutex<()>,
    boot: u32,
    seq: AtomicU64,
    /// Whether the mode of the file was checked since start.
    checked: std::sync::atomic::AtomicBool,
}

/// One audit event.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditEvent {
    /// When (RFC 3339, UTC).
    pub ts: String,
    /// The request's id (also sent as `X-Request-Id`).
    pub request_id: String,
    /// `admin-api`, `admin-ui` or `anonymous`.
    pub actor: String,
    /// `policy.replace`, `policy.delete`, `policy.persist_failed`, `pinning.approve`,
    /// `pinning.reject`, `ca.rotate`, `session.login`, `session.logout`, `auth.failed`.
    pub action: &'static str,
    /// Client address, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Target host of a pinning decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Scope of an approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Fingerprint of an approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    /// The admin's note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Request path (failed attempts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why an attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Exceptions version of the store before the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_before: Option<i64>,
    /// Exceptions version of the store after the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_after: Option<i64>,
    /// Hash of the policy list in force before the call (`GET /api/policy` `hash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_before: Option<String>,
    /// Hash of the policy list in force after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_after: Option<String>,
    /// SHA-256 fingerprint of the CA certificate before a rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_before: Option<String>,
    /// SHA-256 fingerprint of the CA certificate after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_after: Option<String>,
}

// === impl Audit ===

impl Audit {
    /// An audit trail appending to `file` (`None`: tracing log only), created with `mode`
    /// (`log.mode`, normally 0o600) whatever the umask; an existing file loses any bit beyond
    /// `mode` at the first write.
    pub fn new(file: Option<PathBuf>, mode: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                file,
                mode,
                write: Mutex::new(()),
                boot: rand::random(),
                seq: AtomicU64::new(1),
                checked: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// A fresh request id, unique across restarts with overwhelming probability.
    pub fn request_id(&self) -> String {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{n}", self.inner.boot)
    }

    /// Appends `event` (stamped now) and fsyncs it; an error means it is not durable.
    pub async fn record(&self, event: AuditEvent) -> Result<(), ApiError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.record_blocking(event))
            .await
            .map_err(|e| ApiError::join(&e))?
    }

    /// [`Self::record`] on the caller's (blocking) thread.
    pub fn record_blocking(&self, mut event: AuditEvent) -> Result<(), ApiError> {
        event.ts = sluice_proxy::log::timestamp(SystemTime::now());
        tracing::info!(
            action = event.action,
            actor = %event.actor,
            request_id = %event.request_id,
            host = event.host.as_deref().unwrap_or(""),
            "Admin action"
        );
        self.inner.append(&event).map_err(|e| {
            tracing::error!(error = %e, "writing the admin audit trail failed");
            ApiError::Internal("audit trail")
        })
    }

    /// Records a failed token attempt without waiting for the disk (the caller is answering
    /// 401 anyway, and must not be slowed into a lock convoy by a flood).
    pub fn auth_failure(&self, client: IpAddr, path: &str, reason: &'static str) {
        let mut event = AuditEvent {
            ts: sluice_proxy::log::timestamp(SystemTime::now()),
            request_id: self.request_id(),
            actor: "anonymous".into(),
            action: "auth.failed",
            client: Some(client.to_string()),
            path: Some(path.chars().take(200).collect()),
            reason: Some(reason),
            ..AuditEvent::default()
        };
        if event.client.as_deref() == Some("0.0.0.0") {
            event.client = None;
        }
        let inner = self.inner.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn_blocking(move || {
                if let Err(e) = inner.append(&event) {
                    tracing::error!(error = %e, "writing the admin audit trail failed");
                }
            });
        }
    }
}

impl Inner {
    fn append(&self, event: &AuditEvent) -> std::io::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One writer at a time: lines never interleave, and each fsync covers its own line.
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(self.mode)
            .open(path)?;
        if !self.checked.swap(true, Ordering::Relaxed) || !existed {
            sluice_proxy::log::restrict_mode(&file, path, self.mode);
        }
        file.write_all(&line)?;
        file.sync_data()?;
        if !existed {
            // A new file's directory entry is durable only once the directory is synced.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }
}
