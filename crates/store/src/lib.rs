//! sluice's event store: pinning observations, learned bypasses and admin approvals and
//! rejections, in one SQLite file in the data dir.
//!
//! Two ways in:
//! - the data path gets an [`ObservationSink`] from [`Store::writer`]: a bounded queue to a
//!   dedicated writer thread that never blocks a connection (a full queue drops and counts);
//! - the CLI and the admin API call [`Store`] methods synchronously (from the async admin, on a
//!   blocking thread): listings, approve/reject, and the gateway's exception reload
//!   ([`Store::exceptions_version`], [`Store::exceptions_snapshot`]).
//!
//! The gateway and the CLI open the same file at the same time: WAL mode lets readers run next
//! to the writer, every write transaction is `BEGIN IMMEDIATE` (so it waits for the write lock
//! up front instead of failing on a read-to-write upgrade) and every connection waits up to a
//! busy timeout for a lock instead of failing at once.
//!
//! # Durability
//! In WAL mode a commit appends the transaction's frames to the `-wal` file with `write(2)`
//! before `COMMIT` returns. Once written, the data is in the kernel's page cache, which outlives
//! the process: a `kill -9` right after `COMMIT` loses nothing, whatever `synchronous` says.
//! `synchronous` only decides whether the WAL is also fsynced at each commit (`FULL`) or only at
//! checkpoints (`NORMAL`), i.e. what survives an OS crash or power loss; with `NORMAL` the
//! database stays consistent then too, it may just lose the last transactions.
//!
//! So the choice is per kind of data:
//! - the observation writer uses `NORMAL`: observations and the bypasses learned from them are
//!   telemetry that is re-derived from fresh observations, and batching them without an fsync
//!   per commit keeps a burst of failures cheap;
//! - the [`Store`] connection, which carries admin decisions (approve, reject), uses `FULL`:
//!   a human decision cannot be re-derived, is rare, and the fsync costs one CLI verb a few
//!   milliseconds.
//!
//! The writer's [`ObservationSink::committed`] counter is increased only after `COMMIT`
//! returned, which is what makes it an acknowledgement; a test kills a writing child process
//! with SIGKILL and checks that every acknowledged observation is in the file.
//!
//! This crate does not read clocks (callers pass `now`), parse config, or normalise IDNs (hosts
//! arrive normalised; it only lowercases and drops a trailing dot).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, TransactionBehavior};

mod decisions;
mod error;
mod export;
mod model;
mod queries;
mod record;
mod rules;
mod schema;
mod writer;

pub use error::StoreError;
pub use model::{
    Approval, ApprovedException, Evidence, Exceptions, LearnParams, LearnedBypass, Observation,
    ObservationRow, Rejection, Scope, SignalCount, Suspect, SuspectRule, SuspectStatus,
    UnknownScope,
};
pub use record::BatchOutcome;
pub use schema::{current_version, MIGRATIONS};
pub use writer::{
    Dropped, ObservationSink, Retention, WriterHandle, WriterStopped, MAX_BATCH, PRUNE_EVERY,
};

use error::SqlResultExt;

/// Most distinct clients or fingerprints listed in one evidence summary; a host hammered from
/// a whole network would otherwise make `pinning list` unreadable.
pub const MAX_LISTED: usize = 50;

/// Creates the database file 0600 if it is missing, and takes group and other bits away from
/// it and from its `-wal` and `-shm` files (left by an older version) if they exist (security
/// matrix HC-09: the store says who visited what). SQLite creates `-wal` and `-shm` with the
/// database file's own mode (its unix VFS copies it and `fchmod`s the new file), so a private
/// database keeps them private, whatever the umask.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let private = |path: &Path| {
        let at = |source| StoreError::Private {
            path: path.to_path_buf(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(at(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if !meta.is_file() || mode & 0o077 == 0 {
            return Ok(());
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(at)?;
        tracing::warn!(path = %path.display(), was = format!("{mode:04o}"), "event store file was readable by others; permissions tightened");
        Ok(())
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // open(2) applied the umask, which can only take bits away from 0600.
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(StoreError::Private {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        private(Path::new(&name))?;
    }
    Ok(())
}

/// A handle on the event store file. `Send + Sync`: share it behind an `Arc`; calls are
/// serialised on its one connection (the observation writer has its own).
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

// === impl Store ===

impl Store {
    /// Opens (creating it and its directory if needed) the store at `path`, in WAL mode, and
    /// migrates it to [`current_version`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_at_version(path, current_version())
    }

    /// Like [`Self::open`] but migrates only up to `version`: for migration tests.
    #[doc(hidden)]
    pub fn open_at_version(path: &Path, version: i64) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StoreError::CreateDir {
                    path: path.to_path_buf(),
                    dir: dir.to_path_buf(),
                    source,
                })?;
        }
        make_private(path)?;
        // FULL: this connection carries admin decisions; see "Durability" above.
        let mut conn = schema::connect(path, "FULL")?;
        schema::migrate_to(&mut conn, path, version)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `PRAGMA user_version` of the file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.lock()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .at(&self.path, "read schema version")
    }

    /// Starts the observation writer thread with a queue of `capacity` observations (at least
    /// 1), on its own connection to the same file.
    /// It keeps every observation ([`Retention::keep_all`]); the gateway uses
    /// [`Self::writer_with`] and its configured retention.
    pub fn writer(&self, capacity: usize) -> Result<(ObservationSink, WriterHandle), StoreError> {
        self.writer_with(capacity, Arc::new(Retention::keep_all()))
    }

    /// [`Self::writer`] with the retention bounds the writer keeps (shared: changing them
    /// applies to the running writer).
    pub fn writer_with(
        &self,
        capacity: usize,
        retention: Arc<Retention>,
    ) -> Result<(ObservationSink, WriterHandle), StoreError> {
        writer::spawn(&self.path, capacity, retention)
    }

    /// Records `batch` synchronously in one transaction, with the same suspect and learning
    /// rules as the writer thread. For the CLI, imports and tests; the data path uses
    /// [`Self::writer`].
    pub fn record(&self, batch: &[Observation]) -> Result<BatchOutcome, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&self.path, "begin observation batch")?;
        let outcome = record::record_batch(&tx, batch).at(&self.path, "record observations")?;
        tx.commit().at(&self.path, "commit observation batch")?;
        Ok(outcome)
    }

    /// The connection. A panic while it was held leaves nothing half-done that matters: an
    /// open rusqlite transaction rolls back when dropped during unwinding, so the poison flag
    /// is ignored rather than turned into a permanent failure.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
