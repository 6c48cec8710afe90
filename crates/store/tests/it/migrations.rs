//! Opening, schema migrations and failures on bad files.

use rusqlite::Connection;
use sluice_store::{current_version, Store, StoreError, MIGRATIONS};

use crate::support::{obs, temp_store, HOST, JA4};

#[test]
fn fresh_file_in_missing_dir_is_created_in_wal_at_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("sluice").join("events.db");
    let store = Store::open(&path).unwrap();
    assert!(path.exists());
    assert_eq!(store.schema_version().unwrap(), current_version());
    assert_eq!(current_version(), MIGRATIONS.len() as i64);
    let raw = Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(store.exceptions_version().unwrap(), 0);
}

#[test]
fn opening_from_v1_keeps_data_and_reaches_current() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    {
        let v1 = Store::open_at_version(&path, 1).unwrap();
        assert_eq!(v1.schema_version().unwrap(), 1);
        v1.record(&[obs(100, HOST, JA4)]).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), current_version());
    assert_eq!(store.observations(None, 10).unwrap().len(), 1);
    // Opening again is a no-op.
    drop(store);
    let again = Store::open(&path).unwrap();
    assert_eq!(again.schema_version().unwrap(), current_version());
    assert_eq!(again.observations(Some(HOST), 10).unwrap().len(), 1);
}

#[test]
fn file_from_a_newer_build_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    drop(Store::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedSchema { found: 99, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn corrupt_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Sqlite { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn readers_are_not_blocked_by_a_writer_in_another_connection() {
    let (_dir, store) = temp_store();
    store.record(&[obs(1, HOST, JA4)]).unwrap();
    let raw = Connection::open(store.path()).unwrap();
    raw.execute_batch("BEGIN IMMEDIATE; DELETE FROM observations;")
        .unwrap();
    // WAL: the listing sees the last committed state while the other write is open.
    assert_eq!(store.observations(None, 10).unwrap().len(), 1);
    assert_eq!(store.exceptions_version().unwrap(), 0);
    raw.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn concurrent_first_opens_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    std::thread::scope(|scope| {
        let opens: Vec<_> = (0..4).map(|_| scope.spawn(|| Store::open(&path))).collect();
        for open in opens {
            assert_eq!(
                open.join().unwrap().unwrap().schema_version().unwrap(),
                current_version()
            );
        }
    });
}

#[test]
fn handles_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<sluice_store::ObservationSink>();
    assert_send_sync::<sluice_store::WriterHandle>();
}
