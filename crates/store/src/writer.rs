//! The data path's way in: a bounded queue to a dedicated writer thread.
//!
//! [`ObservationSink::try_record`] never blocks: a connection task must not wait on a disk, so
//! when the queue is full the observation is dropped and counted ([`ObservationSink::dropped`],
//! for a metric). The writer thread takes whatever is queued (up to [`MAX_BATCH`]), writes it
//! and applies the learning rule in one transaction, commits, and only then adds to
//! [`ObservationSink::committed`]: a number read from that counter is acknowledged and survives
//! a `kill -9` (see the crate documentation for why).
//!
//! The writer also keeps the observations table bounded ([`Retention`]): after a commit, at most
//! once per [`PRUNE_EVERY`] (or sooner once a tenth of the row cap was written), it deletes
//! observations older than the retention and then the oldest beyond the row cap, so a client
//! that fails handshakes in a loop cannot grow the store without bound (issue 12 item 8).
//!
//! The thread stops once every sink is dropped and the queue is drained; [`WriterHandle::join`]
//! waits for that (graceful shutdown). A batch that fails to commit (disk full, lock held longer
//! than the busy timeout) is logged, counted in [`ObservationSink::failed`] and discarded rather
//! than retried, so a broken disk cannot grow memory without bound.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{SqlResultExt, StoreError};
use crate::model::Observation;
use crate::record::{self, BatchOutcome};
use crate::schema;

/// Most observations written in one transaction; bounds how long the write lock is held.
pub const MAX_BATCH: usize = 1024;

/// How often the writer prunes at most (sooner when many rows arrive).
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long observations are kept and how many at most (`pinning.retention`,
/// `pinning.max_observations`). Shared with the writer thread, so a reload applies at once.
#[derive(Debug)]
pub struct Retention {
    max_age_secs: AtomicI64,
    max_rows: AtomicU64,
}

impl Retention {
    /// Keep observations for `max_age`, and at most `max_rows` of them.
    pub fn new(max_age: Duration, max_rows: u64) -> Self {
        Self {
            max_age_secs: AtomicI64::new(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX)),
            max_rows: AtomicU64::new(max_rows.max(1)),
        }
    }

    /// Changes both bounds (config reload); the next prune uses them.
    pub fn set(&self, max_age: Duration, max_rows: u64) {
        let age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        self.max_age_secs.store(age, Ordering::Relaxed);
        self.max_rows.store(max_rows.max(1), Ordering::Relaxed);
    }

    fn max_age_secs(&self) -> i64 {
        self.max_age_secs.load(Ordering::Relaxed)
    }

    fn max_rows(&self) -> u64 {
        self.max_rows.load(Ordering::Relaxed)
    }
}

impl Retention {
    /// No pruning at all (the CLI's and tests' writers, whose times are their own).
    pub fn keep_all() -> Self {
        Self::new(Duration::from_secs(u64::MAX / 4), u64::MAX)
    }
}

impl Default for Retention {
    /// The documented defaults: 30 days, 100,000 observations.
    fn default() -> Self {
        Self::new(Duration::from_secs(30 * 86_400), 100_000)
    }
}

/// Why [`ObservationSink::try_record`] did not queue an observation. Either way it was counted
/// as dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// The queue is full: the writer is behind (slow disk, lock held by the CLI).
    #[error("observation queue full")]
    QueueFull,
    /// The writer thread is gone.
    #[error("observation writer stopped")]
    WriterStopped,
}

/// The writer thread is gone, so a flush cannot be confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("observation writer stopped")]
pub struct WriterStopped;

/// Cloneable, non-blocking handle the data path records observations through.
#[derive(Clone, Debug)]
pub struct ObservationSink {
    tx: SyncSender<Message>,
    counters: Arc<Counters>,
}

/// Owner's handle on the writer thread: counters and shutdown.
#[derive(Debug)]
pub struct WriterHandle {
    thread: JoinHandle<()>,
    counters: Arc<Counters>,
}

#[derive(Debug)]
enum Message {
    Record(Box<Observation>),
    /// Answered once everything queued before it is committed (or failed).
    Flush(SyncSender<()>),
}

#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    committed: AtomicU64,
    failed: AtomicU64,
    pruned: AtomicU64,
}

/// Opens the writer's own connection and starts the thread.
pub(crate) fn spawn(
    path: &Path,
    capacity: usize,
    retention: Arc<Retention>,
) -> Result<(ObservationSink, WriterHandle), StoreError> {
    // Observations and learned rows can be re-derived, so the writer trades power-loss
    // durability for one fsync per checkpoint instead of per commit; process crashes lose
    // nothing either way (crate documentation).
    let conn = schema::connect(path, "NORMAL")?;
    // A zero-capacity std channel is a rendezvous: try_send would fail whenever the writer is
    // busy, i.e. almost always.
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    let counters = Arc::new(Counters::default());
    let thread_counters = Arc::clone(&counters);
    let thread_path = path.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("sluice-store-writer".into())
        .spawn(move || run(conn, &thread_path, &rx, &thread_counters, &retention))
        .map_err(|source| StoreError::SpawnWriter {
            path: path.to_path_buf(),
            source,
        })?;
    Ok((
        ObservationSink {
            tx,
            counters: Arc::clone(&counters),
        },
        WriterHandle { thread, counters },
    ))
}

/// The writer thread: batch, commit, count, acknowledge flushes.
fn run(
    mut conn: Connection,
    path: &Path,
    rx: &Receiver<Message>,
    counters: &Counters,
    retention: &Retention,
) {
    let mut batch = Vec::new();
    let mut waiters = Vec::new();
    let mut pruner = Pruner {
        last: None,
        since: 0,
    };
    // Prune once at start, then as due; waking every PRUNE_EVERY when idle so that age-based
    // retention also applies to a store nobody writes to.
    pruner.maybe_prune(&conn, path, retention, counters);
    loop {
        let first = match rx.recv_timeout(PRUNE_EVERY) {
            Ok(first) => first,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                pruner.maybe_prune(&conn, path, retention, counters);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Record(obs) => batch.push(*obs),
                Message::Flush(ack) => waiters.push(ack),
            }
            next = if batch.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            commit(&mut conn, path, &batch, counters);
            pruner.since += batch.len() as u64;
            batch.clear();
        }
        // Before acknowledging flushes, so a flush also means "pruned as due".
        pruner.maybe_prune(&conn, path, retention, counters);
        for ack in waiters.drain(..) {
            // The flusher may have given up waiting; nothing to do then.
            let _ = ack.send(());
        }
    }
    tracing::debug!(path = %path.display(), "Observation writer stopped");
}

/// When the last prune ran and how many rows arrived since.
struct Pruner {
    last: Option<Instant>,
    since: u64,
}

impl Pruner {
    fn maybe_prune(
        &mut self,
        conn: &Connection,
        path: &Path,
        retention: &Retention,
        counters: &Counters,
    ) {
        let stale = self.last.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
        let many = self.since > 0 && self.since >= retention.max_rows() / 10;
        if !stale && !many {
            return;
        }
        self.last = Some(Instant::now());
        self.since = 0;
        match prune(conn, retention) {
            Ok(0) => {}
            Ok(n) => {
                counters.pruned.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(pruned = n, "Old observations pruned");
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "Pruning observations failed");
            }
        }
    }
}

/// Deletes observations past the retention, then the oldest beyond the row cap (ids grow
/// with insertion, so the lowest ids are the oldest rows).
fn prune(conn: &Connection, retention: &Retention) -> rusqlite::Result<u64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let before = now.saturating_sub(retention.max_age_secs());
    let old = conn.execute("DELETE FROM observations WHERE ts < ?1", [before])?;
    let cap = i64::try_from(retention.max_rows()).unwrap_or(i64::MAX);
    if cap == i64::MAX {
        return Ok(old as u64);
    }
    let over = conn.execute(
        "DELETE FROM observations WHERE id <= \
         (SELECT id FROM observations ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        [cap],
    )?;
    Ok((old + over) as u64)
}

/// Writes one batch; counts it as committed or failed.
fn commit(conn: &mut Connection, path: &Path, batch: &[Observation], counters: &Counters) {
    let count = u64::try_from(batch.len()).unwrap_or(u64::MAX);
    match write(conn, path, batch) {
        Ok(outcome) => {
            // Only after COMMIT returned: this counter is the acknowledgement.
            counters.committed.fetch_add(count, Ordering::SeqCst);
            tracing::debug!(
                recorded = outcome.recorded,
                learned = outcome.learned,
                "Observations committed"
            );
        }
        Err(error) => {
            counters.failed.fetch_add(count, Ordering::SeqCst);
            tracing::warn!(%error, lost = count, "Observations not recorded");
        }
    }
}

fn write(
    conn: &mut Connection,
    path: &Path,
    batch: &[Observation],
) -> Result<BatchOutcome, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .at(path, "begin observation batch")?;
    let outcome = record::record_batch(&tx, batch).at(path, "record observations")?;
    tx.commit().at(path, "commit observation batch")?;
    Ok(outcome)
}

// === impl ObservationSink ===

impl ObservationSink {
    /// Queues `obs` for the writer without ever blocking; a full queue drops it (counted).
    pub fn try_record(&self, obs: Observation) -> Result<(), Dropped> {
        match self.tx.try_send(Message::Record(Box::new(obs))) {
            Ok(()) => Ok(()),
            Err(error) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                Err(match error {
                    TrySendError::Full(_) => Dropped::QueueFull,
                    TrySendError::Disconnected(_) => Dropped::WriterStopped,
                })
            }
        }
    }

    /// Blocks until everything queued before this call is committed (or has failed, see
    /// [`Self::failed`]). For tests and graceful shutdown, never for the data path.
    pub fn flush(&self) -> Result<(), WriterStopped> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        self.tx
            .send(Message::Flush(ack_tx))
            .map_err(|_| WriterStopped)?;
        ack_rx.recv().map_err(|_| WriterStopped)
    }

    /// Observations deleted by retention or the row cap since start.
    pub fn pruned(&self) -> u64 {
        self.counters.pruned.load(Ordering::Relaxed)
    }

    /// Observations dropped because the queue was full or the writer gone.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Observations committed: acknowledged, durable against a process kill.
    pub fn committed(&self) -> u64 {
        self.counters.committed.load(Ordering::SeqCst)
    }

    /// Observations lost because their batch failed to commit.
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::SeqCst)
    }
}

// === impl WriterHandle ===

impl WriterHandle {
    /// See [`ObservationSink::dropped`].
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// See [`ObservationSink::committed`].
    pub fn committed(&self) -> u64 {
        self.counters.committed.load(Ordering::SeqCst)
    }

    /// See [`ObservationSink::failed`].
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::SeqCst)
    }

    /// Waits for the writer to drain the queue and stop, which happens once every
    /// [`ObservationSink`] (clones included) has been dropped.
    pub fn join(self) -> Result<(), WriterStopped> {
        self.thread.join().map_err(|_| WriterStopped)
    }
}
