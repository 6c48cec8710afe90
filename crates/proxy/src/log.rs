//! The access log: one JSON object per line, one record per connection (`kind: "connect"`) and
//! per request (`kind: "request"`), written by a dedicated thread so the data path never waits
//! on stdout or a disk. If the writer falls behind, records are dropped and counted rather than
//! blocking connections.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Content inspection: `clean`, `blocked:<what> <rule or signature>`, `skipped:<why>`,
    /// `error:<why>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inspection: Option<String>,
    /// Observations behind a learned or approved bypass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<u32>,
    /// SNI and CONNECT host differed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sni_mismatch: bool,
    /// The upstream address dialled (`ip:port`), for tunnels: what a bypass actually reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// The ClientHello carried `encrypted_client_hello`: `sni` is the ECH provider's public
    /// name, not the site the client wants.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ech: bool,
}

/// Records queued for the writer. The channel allocates its whole buffer up front, so this is
/// resident memory (≈600 bytes a record): 8,192 covers more than a second of full load at the
/// writer's batch pause.
const QUEUE: usize = 8_192;

/// Pause between write batches.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

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
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// Starts the writer thread for stdout (`None`) or an append-only file.
    pub fn start(path: Option<&Path>) -> std::io::Result<Self> {
        let out = open(path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let written = Arc::new(AtomicU64::new(0));
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT)));
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            path: path.map(Path::to_path_buf),
            out: std::io::BufWriter::with_capacity(64 * 1024, out),
            reopen: reopen.clone(),
            written: written.clone(),
            recent: recent.clone(),
        };
        std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || writer.run(rx))?;
        let metrics = Arc::new(Metrics::new());
        Ok(Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            written,
            recent,
            metrics,
            reopen,
        })
    }

    /// Reopens the log file before the next record (SIGUSR1, after logrotate moved it).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
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

fn open(path: Option<&Path>) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match path {
        None => Box::new(std::io::stdout()),
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
    })
}

/// The writer thread's state.
struct Writer {
    path: Option<PathBuf>,
    out: std::io::BufWriter<Box<dyn Write + Send>>,
    reopen: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    recent: Arc<Mutex<VecDeque<AccessRecord>>>,
}

impl Writer {
    fn run(mut self, rx: Receiver<AccessRecord>) {
        let mut line = Vec::with_capacity(1024);
        while let Ok(first) = rx.recv() {
            if self.reopen.swap(false, Ordering::AcqRel) {
                self.reopen_file();
            }
            let mut n = 0;
            let mut next = Some(first);
            while let Some(record) = next {
                // serde_json escapes control characters and quotes, so a hostile SNI or URL
                // can never break a line or forge a field (security matrix DL-04). Each line
                // is written whole, so a reader never sees half a record followed by another.
                line.clear();
                if serde_json::to_writer(&mut line, &record).is_ok() {
                    line.push(b'\n');
                    let _ = self.out.write_all(&line);
                    n += 1;
                }
                self.remember(record);
                next = if n < 1024 { rx.try_recv().ok() } else { None };
            }
            let _ = self.out.flush();
            self.written.fetch_add(n, Ordering::Relaxed);
            // Let records accumulate instead of being woken for each one: under load a
            // wake-up per record costs more CPU than the request it logs (BENCHMARKS.md). A
            // sender never blocks (the queue holds 8,192 records) and a line is at most a few
            // milliseconds late.
            std::thread::sleep(BATCH_PAUSE);
        }
    }

    fn remember(&self, record: AccessRecord) {
        if let Ok(mut r) = self.recent.lock() {
            if r.len() == RECENT {
                r.pop_front();
            }
            r.push_back(record);
        }
    }

    fn reopen_file(&mut self) {
        let _ = self.out.flush();
        match open(self.path.as_deref()) {
            Ok(out) => self.out = std::io::BufWriter::with_capacity(64 * 1024, out),
            Err(e) => {
                tracing::error!(error = %e, "reopening the access log failed; still writing to the old file")
            }
        }
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
