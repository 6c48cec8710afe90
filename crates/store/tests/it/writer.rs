//! The data-path writer: batching, acknowledgement, drops on a full queue, shutdown.

use std::time::{Duration, Instant};

use rusqlite::Connection;
use sluice_store::{Dropped, Scope, SuspectRule};

use crate::support::{learning, obs, temp_store, HOST, JA4};

#[test]
fn writer_commits_learns_and_stops_when_sinks_are_dropped() {
    let (_dir, store) = temp_store();
    let (sink, handle) = store.writer(64).unwrap();
    let second = sink.clone();
    for i in 0..3 {
        sink.try_record(learning(obs(1000 + i, HOST, JA4), Scope::Fingerprint))
            .unwrap();
    }
    second.flush().unwrap();
    assert_eq!(sink.committed(), 3);
    assert_eq!(handle.committed(), 3);
    assert_eq!((sink.dropped(), sink.failed()), (0, 0));
    assert_eq!(store.learned(1002).unwrap().len(), 1);
    assert!(store.exceptions_version().unwrap() > 0);
    assert_eq!(
        store.suspects(SuspectRule::default(), 1002).unwrap().len(),
        1
    );

    // Queued but not flushed: still written before the thread stops.
    sink.try_record(obs(2000, HOST, JA4)).unwrap();
    drop(sink);
    drop(second);
    let committed_before_join = handle.committed();
    assert!(committed_before_join <= 4);
    handle.join().unwrap();
    assert_eq!(store.observations(None, 10).unwrap().len(), 4);
}

#[test]
fn full_queue_drops_and_counts_without_blocking() {
    let (_dir, store) = temp_store();
    // Another connection (think: a CLI verb) holds the write lock, so the writer stalls.
    let blocker = Connection::open(store.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let (sink, _handle) = store.writer(2).unwrap();
    sink.try_record(obs(1, HOST, JA4)).unwrap();
    // Give the writer time to take that one and block on the lock (if it has not, the
    // assertions below still hold: it only shifts one observation from queue to dropped).
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let mut accepted = 1;
    let mut full = 0;
    for i in 0..20 {
        match sink.try_record(obs(2 + i, HOST, JA4)) {
            Ok(()) => accepted += 1,
            Err(Dropped::QueueFull) => full += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "try_record blocked: {elapsed:?}"
    );
    assert!(full >= 18, "accepted {accepted}, dropped {full}");
    assert_eq!(sink.dropped(), full);
    assert_eq!(accepted + full, 21);

    blocker.execute_batch("ROLLBACK").unwrap();
    sink.flush().unwrap();
    assert_eq!(sink.committed(), accepted);
    assert_eq!(sink.failed(), 0);
    assert_eq!(
        store.observations(None, 100).unwrap().len() as u64,
        accepted
    );
}

#[test]
fn writer_and_admin_share_the_file_without_failures() {
    let (_dir, store) = temp_store();
    let (sink, handle) = store.writer(100_000).unwrap();
    let admin = std::thread::scope(|scope| {
        let admin = scope.spawn(|| {
            for i in 0..50 {
                let host = format!("host{i}.example");
                store
                    .approve(&host, Scope::Host, None, "", "alice", i)
                    .unwrap();
                store.reject(&host, "", "bob", i).unwrap();
            }
        });
        for i in 0..5000 {
            let host = format!("host{}.example", i % 50);
            sink.try_record(learning(obs(i, &host, JA4), Scope::Host))
                .unwrap();
        }
        admin.join()
    });
    admin.unwrap();
    sink.flush().unwrap();
    assert_eq!(
        (sink.committed(), sink.failed(), sink.dropped()),
        (5000, 0, 0)
    );
    assert_eq!(store.rejections().unwrap().len(), 50);
    drop(sink);
    handle.join().unwrap();
}

/// Issue 12 item 8: the writer keeps the observations table within its retention and row
/// cap, oldest first, whatever a client makes it record.
#[test]
fn the_writer_prunes_past_the_retention_and_beyond_the_row_cap() {
    use std::sync::Arc;
    let (_dir, store) = temp_store();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let retention = Arc::new(sluice_store::Retention::new(
        Duration::from_secs(86_400),
        100,
    ));
    let (sink, _handle) = store.writer_with(4096, retention.clone()).unwrap();
    // Two days old: past the retention.
    for i in 0..5 {
        sink.try_record(obs(now - 2 * 86_400 + i, "old.test", JA4))
            .unwrap();
    }
    for i in 0..250 {
        sink.try_record(obs(now - 250 + i, HOST, JA4)).unwrap();
    }
    sink.flush().unwrap();
    let kept = store.observations(None, 10_000).unwrap();
    assert_eq!(kept.len(), 100);
    assert!(kept.iter().all(|o| o.host == HOST));
    // The newest are the ones kept.
    assert_eq!(kept.iter().map(|o| o.ts).min(), Some(now - 100));
    assert_eq!(sink.pruned(), 155);
    // A reload that lowers the cap applies to the running writer.
    retention.set(Duration::from_secs(86_400), 40);
    for i in 0..10 {
        sink.try_record(obs(now + i, HOST, JA4)).unwrap();
    }
    sink.flush().unwrap();
    assert_eq!(store.observations(None, 10_000).unwrap().len(), 40);
}
