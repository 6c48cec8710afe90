//! The access log: one JSON object per line, one record per connection (`kind: "connect"`) and
//! per request (`kind: "request"`), written by a dedicated thread so the data path never waits
//! on stdout or a disk. If the writer falls behind, records are dropped and counted rather than
//! blocking connections.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::metrics::Metrics;

mod sink;

use sink::Sink;

/// Mode of the access log and the audit trail unless `log.mode` says otherwise: they hold
/// decrypted URLs with their query strings and who did what (security matrix HC-09).
pub const DEFAULT_MODE: u32 = 0o600;

/// Gives the log file `file` (at `path`) exactly the permission bits `mode`, set with
/// `fchmod` so the umask does not matter, and says so when that took bits away (a file an
/// older version or another tool left readable). Only regular files: a log pointed at a
/// device or a FIFO (`/dev/null`) keeps its mode. A file that cannot be changed (owned by
/// someone else) is logged and left as it is; writing to it still works.
pub fn restrict_mode(file: &std::fs::File, path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = file.metadata() else { return };
    if !meta.file_type().is_file() {
        return;
    }
    let current = meta.permissions().mode() & 0o7777;
    if current == mode {
        return;
    }
    match file.set_permissions(std::fs::Permissions::from_mode(mode)) {
        Ok(()) if current & !mode != 0 => tracing::warn!(
            path = %path.display(),
            was = format!("{current:04o}"),
            now = format!("{mode:04o}"),
            "log file permissions tightened (log.mode)"
        ),
        Ok(()) => {}
        Err(e) => tracing::warn!(
            path = %path.display(),
            mode = format!("{current:04o}"),
            error = %e,
            "cannot set the log file's permissions to log.mode"
        ),
    }
}

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
    /// How revocation was checked: `crl` (against `upstream.crls`; an issuer without a CRL
    /// there means unknown, accepted) or `unknown` (no CRLs configured: not checked).
    pub revocation: &'static str,
}

/// One access-log record. Field names are a stable interface (DESIGN.md "Access log").
#[derive(Clone, Debug, Default, Serialize)]
pub struct AccessRecord {
    /// Sequence number, from 1, strictly increasing across restarts and rotations of a log
    /// file; set by the writer (a gap means records were lost).
    pub seq: u64,
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
    /// Cipher suite negotiated with the upstream (decrypted connections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// TLS version negotiated with the client (decrypted connections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_tls_version: Option<String>,
    /// Cipher suite negotiated with the client (decrypted connections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_tls_cipher: Option<String>,
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

/// Pause between write batches: also the bound on how long a record waits before it reaches
/// the kernel (`write(2)`), so what a SIGKILL loses is at most this much of records plus the
/// queue in flight (docs/access-log.md "Durability").
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Most records written in one batch (one `write(2)`).
const BATCH_MAX: u64 = 1024;

/// How many recent records the admin API can show.
pub const RECENT: usize = 2000;

/// Memory the recent records may take (their JSON size, which is what the API returns): a
/// client sending long URLs cannot make the gateway hold, or the API return, more than this
/// (issue 12 item 8). The access log itself keeps every record whole.
pub const RECENT_BYTES: usize = 4 << 20;

/// Longest URL (and other client-chosen text) kept in a recent record; longer ones end in
/// [`TRUNCATED`].
pub const RECENT_FIELD_MAX: usize = 2048;

/// What a shortened field ends with.
pub const TRUNCATED: &str = "…[truncated]";

/// The recent-records ring: records with their JSON size, bounded by count and bytes.
#[derive(Default)]
struct Recent {
    records: VecDeque<(AccessRecord, usize)>,
    bytes: usize,
}

/// Where records go.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<AccessRecord>,
    counts: Arc<Counts>,
    recent: Arc<Mutex<Recent>>,
    metrics: Arc<Metrics>,
    reopen: Arc<AtomicBool>,
}

/// Shared between the senders and the writer thread.
#[derive(Default)]
struct Counts {
    /// Records dropped: queue full, failed writes.
    dropped: AtomicU64,
    /// Records written as complete lines.
    written: AtomicU64,
    /// The last batch failed to write; cleared by the next one that succeeds.
    failing: AtomicBool,
}

// === impl AccessLog ===

impl AccessLog {
    /// Starts the writer thread for stdout (`None`) or an append-only file. An existing file's
    /// torn tail is cut off first and `seq` continues after its last complete record. A file
    /// gets mode [`DEFAULT_MODE`] (see [`Self::start_with_mode`]).
    pub fn start(path: Option<&Path>) -> std::io::Result<Self> {
        Self::start_with_mode(path, DEFAULT_MODE)
    }

    /// [`Self::start`] with the file's permission bits (`log.mode`): a file sluice creates,
    /// now or when it reopens after logrotate, gets exactly `mode`, and an existing one is
    /// brought to it ([`restrict_mode`]).
    pub fn start_with_mode(path: Option<&Path>, mode: u32) -> std::io::Result<Self> {
        let (sink, seq) = Sink::open(path, mode)?;
        let (tx, rx) = sync_channel(QUEUE);
        let counts = Arc::new(Counts::default());
        let recent = Arc::new(Mutex::new(Recent::default()));
        let reopen = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::new());
        let writer = Writer {
            sink,
            seq,
            reopen: reopen.clone(),
            counts: counts.clone(),
            recent: recent.clone(),
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            tx,
            counts,
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
            .map(|r| r.records.iter().map(|(rec, _)| rec.clone()).collect())
            .unwrap_or_default()
    }

    /// Queues a record; never blocks.
    pub fn emit(&self, record: AccessRecord) {
        self.metrics.record(&record);
        self.metrics.log_emitted.inc();
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.log_dropped.inc();
                self.metrics.log_events_dropped.inc();
            }
        }
    }

    /// Records dropped: the writer fell behind, or their batch could not be written.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    /// Records written as complete lines.
    pub fn written(&self) -> u64 {
        self.counts.written.load(Ordering::Relaxed)
    }

    /// Whether the last write to the sink failed (full disk, file size limit, I/O error):
    /// `log.fail = "closed"` refuses new requests while this holds.
    pub fn failing(&self) -> bool {
        self.counts.failing.load(Ordering::Acquire)
    }
}

/// The writer thread's state.
struct Writer {
    sink: Sink,
    /// The next record's sequence number.
    seq: u64,
    reopen: Arc<AtomicBool>,
    counts: Arc<Counts>,
    recent: Arc<Mutex<Recent>>,
    metrics: Arc<Metrics>,
}

// === impl Writer ===

impl Writer {
    fn run(mut self, rx: Receiver<AccessRecord>) {
        let mut batch = Vec::with_capacity(256 * 1024);
        while let Ok(first) = rx.recv() {
            if self.reopen.swap(false, Ordering::AcqRel) {
                self.reopen_file();
            }
            batch.clear();
            let mut n = 0;
            let mut next = Some(first);
            while let Some(record) = next {
                if self.append(&mut batch, record) {
                    n += 1;
                }
                next = if n < BATCH_MAX {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            self.write(&batch, n);
            // Let records accumulate instead of being woken for each one: under load a
            // wake-up per record costs more CPU than the request it logs (BENCHMARKS.md). A
            // sender never blocks (the queue holds 8,192 records) and a line is at most a few
            // milliseconds late.
            std::thread::sleep(BATCH_PAUSE);
        }
    }

    /// Numbers the record and appends its line to the batch; whether it was added.
    fn append(&mut self, batch: &mut Vec<u8>, mut record: AccessRecord) -> bool {
        record.seq = self.seq;
        // serde_json escapes control characters and quotes, so a hostile SNI or URL can never
        // break a line or forge a field (security matrix DL-04).
        let mark = batch.len();
        let added = serde_json::to_writer(&mut *batch, &record).is_ok();
        if added {
            batch.push(b'\n');
            // A number is used once, even if its batch is then lost: a gap in `seq` is how a
            // reader sees that records were dropped.
            self.seq += 1;
        } else {
            batch.truncate(mark);
            self.drop_records(1);
        }
        self.remember(record, batch.len() - mark);
        added
    }

    /// Writes a batch whole, or drops and counts it (the sink cut any partial line off).
    fn write(&mut self, batch: &[u8], n: u64) {
        if n == 0 {
            return;
        }
        match self.sink.write_batch(batch) {
            Ok(()) => {
                self.counts.written.fetch_add(n, Ordering::Relaxed);
                self.metrics.log_written.inc_by(n);
                if self.counts.failing.swap(false, Ordering::AcqRel) {
                    tracing::warn!("access log writable again");
                }
            }
            Err(e) => {
                self.drop_records(n);
                // Once per outage, not once per batch.
                if !self.counts.failing.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %e, "access log write failed; dropping records until it succeeds");
                }
            }
        }
    }

    fn drop_records(&self, n: u64) {
        self.counts.dropped.fetch_add(n, Ordering::Relaxed);
        self.metrics.log_events_dropped.inc_by(n);
    }

    /// Keeps a copy for the admin API, shortened where a client made it long, within
    /// [`RECENT`] records and [`RECENT_BYTES`].
    fn remember(&self, mut record: AccessRecord, line_len: usize) {
        let mut size = line_len;
        for field in [
            &mut record.url,
            &mut record.host,
            &mut record.user,
            &mut record.error,
        ] {
            if let Some(text) = field.as_mut() {
                size = size.saturating_sub(shorten(text, RECENT_FIELD_MAX));
            }
        }
        if let Ok(mut r) = self.recent.lock() {
            while r.records.len() >= RECENT
                || !r.records.is_empty() && r.bytes + size > RECENT_BYTES
            {
                if let Some((_, n)) = r.records.pop_front() {
                    r.bytes -= n;
                }
            }
            r.bytes += size;
            r.records.push_back((record, size));
        }
    }

    fn reopen_file(&mut self) {
        if let Err(e) = self.sink.reopen() {
            tracing::error!(error = %e, "reopening the access log failed; still writing to the old file");
        }
    }
}

/// Cuts `text` to at most `max` bytes (at a character boundary) plus [`TRUNCATED`]; returns
/// by how many bytes it shrank (never grows it).
fn shorten(text: &mut String, max: usize) -> usize {
    if text.len() <= max + TRUNCATED.len() {
        return 0;
    }
    let before = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(TRUNCATED);
    before - text.len()
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests;
