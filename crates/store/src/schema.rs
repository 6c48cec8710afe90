//! Schema, migrations and connection settings.
//!
//! The schema version is `PRAGMA user_version`; [`MIGRATIONS`] is the ordered list of scripts,
//! entry `i` taking the file from version `i` to `i + 1`. Each step runs in its own
//! `BEGIN IMMEDIATE` transaction together with the version bump, so a crash mid-migration leaves
//! the previous version intact, and two processes opening a fresh file at once (gateway and CLI)
//! serialise on the write lock instead of both applying step 1. Migrations only ever get
//! appended: a released entry is never edited.
//!
//! Conventions of the schema: times are unix seconds (`INTEGER`); in `learned` and `approvals`
//! an empty `ja4` means "the whole host", so that the pair can be a plain primary key (SQLite
//! treats NULLs as distinct in unique constraints).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{SqlResultExt, StoreError};

/// How long a statement waits for another connection's write lock before failing with
/// `database is locked`. The CLI and the running gateway share the file; their transactions are
/// short, so seconds are plenty and still bound how long a CLI verb can hang.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The migration scripts, in order. `MIGRATIONS.len()` is the current schema version.
pub const MIGRATIONS: &[&str] = &[
    // v1: observations, learned bypasses, admin decisions and the exceptions change counter.
    r#"
    CREATE TABLE observations (
        id        INTEGER PRIMARY KEY,
        ts        INTEGER NOT NULL,
        host      TEXT    NOT NULL,
        app       TEXT,
        client    TEXT    NOT NULL,
        user_name TEXT,
        policy    TEXT    NOT NULL,
        signal    TEXT    NOT NULL,
        ja4       TEXT    NOT NULL
    );
    CREATE INDEX observations_host_ja4_ts ON observations (host, ja4, ts);
    CREATE INDEX observations_ts ON observations (ts);

    CREATE TABLE learned (
        host           TEXT    NOT NULL,
        ja4            TEXT    NOT NULL DEFAULT '',
        app            TEXT,
        created        INTEGER NOT NULL,
        expires        INTEGER NOT NULL,
        evidence_count INTEGER NOT NULL,
        first_seen     INTEGER NOT NULL,
        last_seen      INTEGER NOT NULL,
        PRIMARY KEY (host, ja4)
    ) WITHOUT ROWID;

    CREATE TABLE approvals (
        id       INTEGER PRIMARY KEY,
        host     TEXT    NOT NULL,
        scope    TEXT    NOT NULL CHECK (scope IN ('host', 'fingerprint')),
        ja4      TEXT    NOT NULL DEFAULT '',
        note     TEXT    NOT NULL DEFAULT '',
        actor    TEXT    NOT NULL,
        ts       INTEGER NOT NULL,
        evidence TEXT    NOT NULL,
        UNIQUE (host, scope, ja4)
    );

    CREATE TABLE rejections (
        host  TEXT    PRIMARY KEY,
        note  TEXT    NOT NULL DEFAULT '',
        actor TEXT    NOT NULL,
        ts    INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE meta (
        key   TEXT    PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('exceptions_version', 0);
    "#,
];

/// The schema version this build writes.
pub fn current_version() -> i64 {
    // The list is a handful of entries; the cast cannot truncate.
    MIGRATIONS.len() as i64
}

/// Opens `path` and applies the connection settings every store connection uses.
///
/// `synchronous` is `"FULL"` or `"NORMAL"`; see the crate documentation for which connection
/// uses which and why.
pub(crate) fn connect(path: &Path, synchronous: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).at(path, "open")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .at(path, "set busy timeout")?;
    // The first real read happens here, so a file that is not a database fails at this point,
    // as an error naming the file rather than a panic.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .at(path, "enable WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), journal_mode = %mode, "WAL mode not available");
    }
    conn.pragma_update(None, "synchronous", synchronous)
        .at(path, "set synchronous")?;
    Ok(conn)
}

/// Applies migrations until the file is at `target` (or newer: then nothing happens unless it
/// is newer than this build knows, which is an error).
pub(crate) fn migrate_to(
    conn: &mut Connection,
    path: &Path,
    target: i64,
) -> Result<(), StoreError> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path, "begin migration")?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .at(path, "read schema version")?;
        if found > current_version() {
            return Err(StoreError::UnsupportedSchema {
                path: path.to_path_buf(),
                found,
                supported: current_version(),
            });
        }
        if found >= target {
            return Ok(());
        }
        let Some(script) = usize::try_from(found).ok().and_then(|i| MIGRATIONS.get(i)) else {
            // A negative user_version is not something sluice writes.
            return Err(StoreError::UnsupportedSchema {
                path: path.to_path_buf(),
                found,
                supported: current_version(),
            });
        };
        tx.execute_batch(script).at(path, "migrate schema")?;
        tx.pragma_update(None, "user_version", found + 1)
            .at(path, "write schema version")?;
        tx.commit().at(path, "commit migration")?;
        tracing::info!(path = %path.display(), version = found + 1, "Event store migrated");
    }
}
