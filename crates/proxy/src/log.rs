//! The access log: one JSON object per line, one record per connection (`kind: "connect"`) and
//! per request (`kind: "request"`), written by a dedicated thread so the data path never waits
//! on stdout or a disk. If the writer falls behind, records are dropped and counted rather than
//! blocking connections.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::metrics::Metrics;

/// Upstream certificate details, where seen.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpstreamCert {
    /// Issuer distinguished name.
    pub issuer: String,
    /// Subject distinguished name.
    pub subject: String,
    /// Not valid before (RFC 3339).
    pub not_before: String,
    /// Not valid after (RFC 3339).
    pub not_after: String,
}

/// One access-log record. Field names are a stable interface (DESIGN.md "Access log").
#[derive(Clone, Debug, Default, Serialize)]
pub struct AccessRecord {
    /// Time the connection or request started (RFC 3339, UTC).
    pub ts: String,
    /// Connection id, shared by a connection and its requests.
    pub conn_id: u64,
    /// Client address.
    pub client: String,
    /// Proxy user.
    pub user: Option<String>,
    /// Policy applied.
    pub policy: Option<String>,
    /// `connect` or `request`.
    pub kind: &'static str,
    /// CONNECT host or request host.
    pub host: Option<String>,
    /// SNI sent by the client.
    pub sni: Option<String>,
    /// Destination port.
    pub port: Option<u16>,
    /// Request method.
    pub method: Option<String>,
    /// Request URL.
    pub url: Option<String>,
    /// HTTP status sent to the client.
    pub status: Option<u16>,
    /// `decrypt`, `bypass` or `block`.
    pub decision: Option<&'static str>,
    /// Why (see DESIGN.md and docs/access-log.md).
    pub reason: Option<String>,
    /// The rule that decided.
    pub rule: Option<String>,
    /// Catalog application.
    pub app: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Bytes from the client.
    pub bytes_up: u64,
    /// Bytes to the client.
    pub bytes_down: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Error detail, when something failed.
    pub error: Option<String>,
    /// ALPN negotiated with the client.
    pub alpn: Option<String>,
    /// Client TLS fingerprint (JA4).
    pub ja4: Option<String>,
    /// TLS version of the upstream (decrypt) or the client's highest offer (bypass).
    pub tls_version: Option<String>,
    /// Upstream certificate.
    pub upstream_cert: Option<UpstreamCert>,
    /// Observations behind a learned or approved bypass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<u32>,
    /// SNI and CONNECT host differed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sni_mismatch: bool,
}

/// How many recent records the admin API can show.
pub const RECENT: usize = 2000;

/// Where records go.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<AccessRecord>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    recent: Arc<Mutex<VecDeque<AccessRecord>>>,
    metrics: Arc<Metrics>,
}

impl AccessLog {
    /// Starts the writer thread for stdout (`None`) or an append-only file.
    pub fn start(path: Option<&Path>) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match path {
            None => Box::new(std::io::stdout()),
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = sync_channel(65_536);
        let written = Arc::new(AtomicU64::new(0));
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT)));
        let (w, r) = (written.clone(), recent.clone());
        std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || write_loop(rx, out, &w, &r))?;
        let metrics = Arc::new(Metrics::new());
        Ok(Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            written,
            recent,
            metrics,
        })
    }

    /// The metrics every emitted record is counted in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The most recent records written, oldest first.
    pub fn recent(&self) -> Vec<AccessRecord> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Queues a record; never blocks.
    pub fn emit(&self, record: AccessRecord) {
        self.metrics.record(&record);
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.log_dropped.inc();
            }
        }
    }

    /// Records dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records written.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

fn write_loop(
    rx: Receiver<AccessRecord>,
    out: Box<dyn Write + Send>,
    written: &AtomicU64,
    recent: &Mutex<VecDeque<AccessRecord>>,
) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(first) = rx.recv() {
        let mut n = 0;
        let mut next = Some(first);
        while let Some(record) = next {
            // serde_json escapes control characters and quotes, so a hostile SNI or URL can
            // never break a line or forge a field (security matrix DL-04).
            if serde_json::to_writer(&mut out, &record).is_ok() {
                let _ = out.write_all(b"\n");
                n += 1;
            }
            if let Ok(mut r) = recent.lock() {
                if r.len() == RECENT {
                    r.pop_front();
                }
                r.push_back(record);
            }
            next = if n < 1024 { rx.try_recv().ok() } else { None };
        }
        let _ = out.flush();
        written.fetch_add(n, Ordering::Relaxed);
    }
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt).unwrap_or_default()
}
