//! The access log's tail repair, sequence numbering across restarts and rotations, and the
//! writer's counts.

use std::io::Write;
use std::time::{Duration, Instant};

use super::sink::{scan_tail, Tail};
use super::*;

fn line(seq: u64) -> String {
    format!("{{\"seq\":{seq},\"kind\":\"connect\"}}\n")
}

fn record() -> AccessRecord {
    AccessRecord {
        kind: "connect",
        ..Default::default()
    }
}

/// Waits until the writer has written `n` records in total.
fn wait_written(log: &AccessLog, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.written() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} written",
            log.written()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn seqs(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("whole JSON lines");
            v["seq"].as_u64().expect("a seq")
        })
        .collect()
}

#[test]
fn scan_keeps_complete_lines() {
    let text = format!("{}{}", line(1), line(2));
    let tail = scan_tail(text.as_bytes(), true);
    assert_eq!(
        tail,
        Tail {
            keep: text.len(),
            last_seq: Some(2)
        }
    );
    assert_eq!(
        scan_tail(b"", true),
        Tail {
            keep: 0,
            last_seq: None
        }
    );
}

#[test]
fn scan_cuts_an_unterminated_line() {
    let good = format!("{}{}", line(7), line(8));
    let torn = format!("{good}{{\"seq\":9,\"kind\":\"con");
    let tail = scan_tail(torn.as_bytes(), true);
    assert_eq!((tail.keep, tail.last_seq), (good.len(), Some(8)));
    // Even a last line that happens to be valid JSON is torn without its newline.
    let unterminated = format!("{good}{{\"seq\":9}}");
    assert_eq!(scan_tail(unterminated.as_bytes(), true).keep, good.len());
}

#[test]
fn scan_cuts_trailing_lines_that_are_not_json() {
    let good = line(3);
    let text = format!("{good}{{\"seq\":4,\"ki\n\n{{\"half");
    let tail = scan_tail(text.as_bytes(), true);
    assert_eq!((tail.keep, tail.last_seq), (good.len(), Some(3)));
    // Nothing valid at all: everything goes.
    assert_eq!(scan_tail(b"garbage\nmore", true).keep, 0);
}

#[test]
fn scan_never_cuts_into_the_line_the_window_starts_in() {
    // The window starts mid-line: that first fragment cannot be judged, so it stays.
    let text = b"ind\":\"connect\"}\n{\"half";
    let tail = scan_tail(text, false);
    assert_eq!((tail.keep, tail.last_seq), (16, None));
}

#[test]
fn scan_without_seq_restarts_numbering() {
    // A log written before records had a `seq`.
    let tail = scan_tail(b"{\"kind\":\"connect\"}\n", true);
    assert_eq!(tail.last_seq, None);
}

#[test]
fn restart_repairs_a_torn_tail_and_continues_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::start(Some(&path)).unwrap();
    for _ in 0..3 {
        log.emit(record());
    }
    wait_written(&log, 3);
    drop(log);
    assert_eq!(seqs(&path), [1, 2, 3]);
    // A crash in the middle of a write.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"{\"seq\":4,\"kind\":\"con").unwrap();
    drop(f);
    let log = AccessLog::start(Some(&path)).unwrap();
    for _ in 0..2 {
        log.emit(record());
    }
    wait_written(&log, 2);
    assert_eq!(seqs(&path), [1, 2, 3, 4, 5]);
    let recent: Vec<u64> = log.recent().iter().map(|r| r.seq).collect();
    assert_eq!(recent, [4, 5]);
}

#[test]
fn seq_continues_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let log = AccessLog::start(Some(&path)).unwrap();
    log.emit(record());
    log.emit(record());
    wait_written(&log, 2);
    std::fs::rename(&path, &rotated).unwrap();
    log.reopen();
    log.emit(record());
    wait_written(&log, 3);
    assert_eq!(seqs(&rotated), [1, 2]);
    assert_eq!(seqs(&path), [3]);
    assert_eq!(log.metrics().log_written.get(), 3);
    assert_eq!(log.metrics().log_emitted.get(), 3);
    assert_eq!(log.dropped(), 0);
    assert!(!log.failing());
}

#[test]
fn stdout_numbers_from_one() {
    let (_, seq) = Sink::open(None, DEFAULT_MODE).unwrap();
    assert_eq!(seq, 1);
}

#[test]
fn a_failing_sink_drops_counts_and_flags() {
    // /dev/full fails every write with ENOSPC (and cannot be truncated either).
    let log = AccessLog::start(Some(Path::new("/dev/full"))).unwrap();
    for _ in 0..3 {
        log.emit(record());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.dropped() < 3 {
        assert!(Instant::now() < deadline, "dropped {}", log.dropped());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(log.failing());
    assert_eq!(log.written(), 0);
    assert_eq!(log.metrics().log_events_dropped.get(), 3);
    assert_eq!(log.metrics().log_emitted.get(), 3);
    // Only queue overflows count in the older metric.
    assert_eq!(log.metrics().log_dropped.get(), 0);
}

/// Issue 12 item 8: long URLs are shortened in the recent records (the file keeps them whole)
/// and the ring stays within its byte budget.
#[test]
fn recent_records_are_bounded_by_bytes_and_keep_urls_short() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::start(Some(&path)).unwrap();
    let long = format!("https://a.test/{}", "x".repeat(60_000));
    let n = 300u64;
    for _ in 0..n {
        log.emit(AccessRecord {
            url: Some(long.clone()),
            ..record()
        });
    }
    wait_written(&log, n);
    let recent = log.recent();
    assert_eq!(recent.len() as u64, n, "short records all fit");
    for r in &recent {
        let url = r.url.as_deref().unwrap();
        assert!(
            url.len() <= RECENT_FIELD_MAX + TRUNCATED.len(),
            "{}",
            url.len()
        );
        assert!(url.ends_with(TRUNCATED));
    }
    // The file has them whole.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains(&long)).count() as u64, n);
    let bytes: usize = recent
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len())
        .sum();
    assert!(bytes <= RECENT_BYTES, "{bytes}");
    // Records made large by many fields together still respect the budget.
    let wide = "y".repeat(RECENT_FIELD_MAX);
    for _ in 0..RECENT as u64 {
        log.emit(AccessRecord {
            url: Some(wide.clone()),
            host: Some(wide.clone()),
            user: Some(wide.clone()),
            error: Some(wide.clone()),
            ..record()
        });
    }
    wait_written(&log, n + RECENT as u64);
    let bytes: usize = log
        .recent()
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len())
        .sum();
    assert!(bytes <= RECENT_BYTES, "{bytes}");
    assert!(log.recent().len() < RECENT);
}
