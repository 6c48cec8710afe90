//! The data path's way in: a bounded queue to a dedicated writer thread.
//!
//! [`ObservationSink::try_record`] never blocks: a connection task must not wait on a disk, so
//! when the queue is full the observation is dropped and counted ([`ObservationSink::dropped`],
//! for a metric). The writer thread takes whatever is queued (up to [`MAX_BATCH`]), writes it
//! and applies the learning rule in one transaction, commits, and only then adds to
//! [`ObservationSink::committed`]: a number read from that counter is acknowledged and survives
//! a `kill -9` (see the crate documentation for why).
//!
//! The thread stops once every sink is dropped and the queue is drained; [`WriterHandle::join`]
//! waits for that (graceful shutdown). A batch that fails to commit (disk full, lock held longer
//! than the busy timeout) is logged, counted in [`ObservationSink::failed`] and discarded rather
//! than retried, so a broken disk cannot grow memory without bound.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{SqlResultExt, StoreError};
use crate::model::Observation;
use crate::record::{self, BatchOutcome};
use crate::schema;

/// Most observations written in one transaction; bounds how long the write lock is held.
pub const MAX_BATCH: usize = 1024;

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
}

/// Opens the writer's own connection and starts the thread.
pub(crate) fn spawn(
    path: &Path,
    capacity: usize,
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
        .spawn(move || run(conn, &thread_path, &rx, &thread_counters))
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
fn run(mut conn: Connection, path: &Path, rx: &Receiver<Message>, counters: &Counters) {
    let mut batch = Vec::new();
    let mut waiters = Vec::new();
    while let Ok(first) = rx.recv() {
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
            batch.clear();
        }
        for ack in waiters.drain(..) {
            // The flusher may have given up waiting; nothing to do then.
            let _ = ack.send(());
        }
    }
    tracing::debug!(path = %path.display(), "Observation writer stopped");
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
