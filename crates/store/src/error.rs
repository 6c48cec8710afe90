//! Errors of the event store.
//!
//! Every error that comes from the database file names that file, so that a message printed by
//! the CLI or logged by the gateway says which store is locked, corrupt or unwritable. Nothing in
//! this crate panics on a bad database: SQLite's own errors (`file is not a database`,
//! `database is locked`, `disk I/O error`) come back as [`StoreError::Sqlite`].

use std::path::{Path, PathBuf};

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file or its WAL/SHM file could not be made private (mode 0600).
    #[error("{path}: cannot make it private (mode 0600): {source}")]
    Private {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The directory that should hold the database could not be created.
    #[error("event store {}: cannot create directory {}: {source}", path.display(), dir.display())]
    CreateDir {
        /// The database file.
        path: PathBuf,
        /// The directory that could not be created.
        dir: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// SQLite refused an operation (open, pragma, query, transaction).
    #[error("event store {}: {op}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What the store was doing, e.g. `"open"`, `"record observations"`.
        op: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file carries a schema version this build does not know (written by a newer sluice).
    #[error(
        "event store {}: schema version {found} is not one this build supports (0..={supported})",
        path.display()
    )]
    UnsupportedSchema {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The newest version this build migrates to.
        supported: i64,
    },
    /// A stored evidence snapshot is not the JSON this build writes.
    #[error("event store {}: evidence of approval {id} is unreadable: {source}", path.display())]
    InvalidEvidence {
        /// The database file.
        path: PathBuf,
        /// Row id of the approval.
        id: i64,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// An evidence snapshot could not be encoded as JSON.
    #[error("cannot encode evidence as JSON: {0}")]
    EncodeEvidence(serde_json::Error),
    /// `approve --scope fingerprint` without a fingerprint, and none was ever observed for the host.
    #[error("no fingerprint observed for {host}: pass one, or approve with scope \"host\"")]
    NoFingerprint {
        /// The host being approved.
        host: String,
    },
    /// `approve --scope fingerprint` without a fingerprint, and the host was seen with several.
    #[error("{host} was observed with several fingerprints ({}): pass one", candidates.join(", "))]
    AmbiguousFingerprint {
        /// The host being approved.
        host: String,
        /// The fingerprints observed for it.
        candidates: Vec<String>,
    },
    /// The observation writer thread could not be started.
    #[error("event store {}: cannot start the writer thread: {source}", path.display())]
    SpawnWriter {
        /// The database file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// An empty host name was given.
    #[error("empty host name")]
    EmptyHost,
    /// The suspects could not be written as TOML.
    #[error("cannot write suspects as TOML: {0}")]
    Export(#[from] toml::ser::Error),
}

/// Attaches the database path and the operation to a rusqlite result.
pub(crate) trait SqlResultExt<T> {
    /// Maps a SQLite error to [`StoreError::Sqlite`] naming `path` and `op`.
    fn at(self, path: &Path, op: &'static str) -> Result<T, StoreError>;
}

// === impl SqlResultExt ===

impl<T> SqlResultExt<T> for Result<T, rusqlite::Error> {
    fn at(self, path: &Path, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            op,
            source,
        })
    }
}
