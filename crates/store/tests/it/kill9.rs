//! `kill -9` during a burst of observations loses nothing that was acknowledged.
//!
//! The test re-executes this test binary as a child that runs only [`child_writer_process`]
//! (selected by an environment variable, a no-op otherwise). The child records observations in
//! a loop and prints the writer's committed counter whenever it moves; the parent SIGKILLs it
//! mid-burst, reopens the file and checks every acknowledged observation is there.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use rusqlite::Connection;
use sluice_store::{Scope, Store};

use crate::support::{learning, obs, JA4};

const CHILD_ENV: &str = "SLUICE_STORE_KILL9_CHILD_DB";
/// Acknowledged observations the parent waits for before killing.
const TARGET: u64 = 5000;

#[test]
fn child_writer_process() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&path)).unwrap();
    let (sink, _handle) = store.writer(4096).unwrap();
    let mut stdout = std::io::stdout().lock();
    let mut printed = 0;
    let mut ts = 0_i64;
    loop {
        for _ in 0..64 {
            // Learn mode, so batches also write learned bypasses and bump the version.
            let host = format!("h{}.example", ts % 13);
            let _ = sink.try_record(learning(obs(ts, &host, JA4), Scope::Fingerprint));
            ts += 1;
        }
        let committed = sink.committed();
        if committed != printed {
            writeln!(stdout, "committed {committed}").unwrap();
            stdout.flush().unwrap();
            printed = committed;
        }
        std::thread::yield_now();
    }
}

#[test]
fn kill_9_loses_no_acknowledged_observation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["kill9::child_writer_process", "--exact", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = 0_u64;
    for line in lines.by_ref() {
        if let Some(n) = line.unwrap().strip_prefix("committed ") {
            acknowledged = n.parse().unwrap();
            if acknowledged >= TARGET {
                break;
            }
        }
    }
    assert!(
        acknowledged >= TARGET,
        "child stopped early at {acknowledged}"
    );
    // Child::kill is SIGKILL on Unix: no destructor, no final commit, no WAL checkpoint.
    child.kill().unwrap();
    child.wait().unwrap();
    // Counts printed before the kill but not yet read are acknowledged too.
    for line in lines {
        if let Some(n) = line.unwrap().strip_prefix("committed ") {
            acknowledged = acknowledged.max(n.parse().unwrap());
        }
    }

    let store = Store::open(&path).unwrap();
    let raw = Connection::open(&path).unwrap();
    let integrity: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let stored: u64 = raw
        .query_row("SELECT count(*) FROM observations", [], |r| r.get(0))
        .unwrap();
    eprintln!("kill -9: {acknowledged} acknowledged, {stored} stored");
    assert!(
        stored >= acknowledged,
        "{stored} stored < {acknowledged} acknowledged"
    );
    // Learned state written by the child survives too, and the store is usable.
    assert!(!store.learned(0).unwrap().is_empty());
    store.record(&[obs(1, "after.example", JA4)]).unwrap();
}
