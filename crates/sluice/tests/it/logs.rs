//! Access-log durability under load, end to end (security matrix DL-02, DL-03): a SIGKILL and a
//! torn line, rotation with SIGUSR1, and a sink that cannot be written (the gateway's
//! RLIMIT_FSIZE lowered with util-linux `prlimit`, so writes fail with EFBIG: a full disk
//! without root or a tmpfs mount).
//!
//! Load comes from client threads that each open a connection, send a CONNECT to a port the
//! gateway refuses (one access record each, no origin involved) and read the answer, plus one
//! thread of real decrypted requests with curl. Synchronisation is by polling the log file or
//! `/metrics` with a deadline, never by sleeping for a guessed time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_test_support::{curl_response, curl_response_via, raw_proxy_exchange, LeafOpts};

use crate::admin::{admin, token};
use crate::World;

/// How long a test waits for the log or the metrics to reach a state.
const DEADLINE: Duration = Duration::from_secs(30);

/// A refused CONNECT: the cheapest request that still makes the gateway write a record.
const REFUSED: &[u8] = b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n";

/// Client threads driving the gateway until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

// === impl Load ===

impl Load {
    /// `raw` threads of refused CONNECTs and one thread of decrypted curl requests.
    fn start(w: &World, raw: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let proxy = w.gw.proxy_addr();
        let mut threads: Vec<JoinHandle<()>> = (0..raw)
            .map(|_| {
                let (stop, answered) = (stop.clone(), answered.clone());
                std::thread::spawn(move || refused_loop(proxy, &stop, &answered))
            })
            .collect();
        let args = [
            "--max-time".to_owned(),
            "10".to_owned(),
            "--proxy".to_owned(),
            w.gw.proxy_url(),
            "--cacert".to_owned(),
            w.gw.ca_pem_path().to_string_lossy().into_owned(),
            w.url("origin.test", "/load"),
        ];
        let (s, a) = (stop.clone(), answered.clone());
        threads.push(std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            while !s.load(Ordering::Relaxed) {
                if curl_response(&args).http_code == 200 {
                    a.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        Self {
            stop,
            answered,
            threads,
        }
    }

    /// Stops and joins the threads; how many requests were answered.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load thread");
        }
        self.answered.load(Ordering::Relaxed)
    }
}

fn refused_loop(proxy: SocketAddr, stop: &AtomicBool, answered: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(proxy) else {
            // The gateway is down (killed, restarting): back off instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reply = Vec::new();
        if s.write_all(REFUSED).is_ok()
            && s.read_to_end(&mut reply).is_ok()
            && reply.starts_with(b"HTTP/1.1 403")
        {
            answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every line of the files, each checked to be one JSON object; a file must end in a newline.
fn records(paths: &[PathBuf]) -> Vec<Value> {
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends in a partial line: {:?}",
            p.display(),
            &text[text.len().saturating_sub(200)..]
        );
        for (i, line) in text.lines().enumerate() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: not JSON ({e}): {line}", p.display(), i + 1));
            assert!(v.is_object(), "{line}");
            out.push(v);
        }
    }
    out
}

fn seqs(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {r}")))
        .collect()
}

fn line_count(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Waits until `path` holds at least `n` lines.
#[track_caller]
fn wait_lines(path: &Path, n: usize) {
    let started = Instant::now();
    while line_count(path) < n {
        assert!(
            started.elapsed() < DEADLINE,
            "{} has {} of {n} lines",
            path.display(),
            line_count(path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `/metrics` text.
fn metrics_text(w: &World) -> String {
    gw_metrics_text(&w.gw)
}

fn gw_metrics_text(gw: &sluice_test_support::TestGateway) -> String {
    let auth = format!("Authorization: Bearer {}", token(gw));
    let r = admin(gw, "/metrics", &["-H", &auth]);
    assert_eq!(r.http_code, 200, "{}", r.body_str());
    r.body_str()
}

/// One unlabelled sample from a `/metrics` text.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

/// The log counters once every record handed to the writer was written or dropped and no
/// connection is open: (emitted, written, dropped).
fn settled(w: &World) -> (u64, u64, u64) {
    settled_gw(&w.gw)
}

fn settled_gw(gw: &sluice_test_support::TestGateway) -> (u64, u64, u64) {
    let started = Instant::now();
    loop {
        let text = gw_metrics_text(gw);
        let emitted = sample(&text, "sluice_log_events_emitted_total");
        let written = sample(&text, "sluice_log_events_written_total");
        let dropped = sample(&text, "sluice_log_events_dropped_total");
        // The metrics scrape is itself no proxy connection, so 0 means the load is done.
        let active = sample(&text, "sluice_active_connections");
        if active == 0 && emitted == written + dropped {
            return (emitted, written, dropped);
        }
        assert!(started.elapsed() < DEADLINE, "never settled:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `/metrics` until `pred` holds for the sample `name`.
#[track_caller]
fn wait_metric(w: &World, name: &str, pred: impl Fn(u64) -> bool) -> u64 {
    let started = Instant::now();
    loop {
        let v = sample(&metrics_text(w), name);
        if pred(v) {
            return v;
        }
        assert!(started.elapsed() < DEADLINE, "{name} stuck at {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sets the gateway's soft RLIMIT_FSIZE (the hard limit is left alone, so it can be raised
/// again without privileges). Panics if util-linux `prlimit` is missing: scripts/test
/// installs it.
fn set_fsize(pid: u32, soft: &str) {
    let out = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={soft}:")])
        .output()
        .unwrap_or_else(|e| panic!("prlimit (util-linux) is required for the DL-03 tests: {e}"));
    assert!(
        out.status.success(),
        "prlimit --fsize={soft}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn log_world(extra: &[(&str, &str)]) -> (World, PathBuf) {
    let w = World::with(&["origin.test"], LeafOpts::default(), |mut c| {
        c = c.set("log.access", "access.log");
        for (k, v) in extra {
            c = c.set(k, *v);
        }
        c
    });
    let log = w.gw.dir().join("access.log");
    (w, log)
}

fn fingerprint(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("CA certificate")))
}

/// A refused CONNECT's answer head.
fn refused_reply(w: &World) -> String {
    let reply = raw_proxy_exchange(w.gw.proxy_addr(), REFUSED, Duration::from_secs(5));
    String::from_utf8_lossy(&reply).into_owned()
}

/// DL-02: SIGKILL under load, a torn half line on top, restart on the same file: every line
/// parses, the torn line is gone, `seq` continues without reuse, the CA is the same.
#[test]
fn dl02_sigkill_and_torn_line_then_seq_continues() {
    let (mut w, log) = log_world(&[]);
    let ca = fingerprint(w.gw.ca_pem_path());
    let load = Load::start(&w, 4);
    wait_lines(&log, 400);
    w.gw.kill9();
    assert!(load.stop() > 0, "the load was answered before the kill");
    let before = records(std::slice::from_ref(&log));
    // What a crash in the middle of a write leaves.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(br#"{"seq":999999,"ts":"2026-01-01T00:00:00.000Z","kind":"con"#)
        .unwrap();
    drop(f);

    w.gw.launch();
    w.gw.wait_for_stderr("torn line", crate::LOG_WAIT);
    assert_eq!(fingerprint(w.gw.ca_pem_path()), ca, "CA unchanged");
    let load = Load::start(&w, 4);
    wait_lines(&log, before.len() + 400);
    assert!(load.stop() > 0);
    assert!(w.gw.terminate().success());

    let all = seqs(&records(&[log]));
    assert!(all.len() >= before.len() + 400);
    assert_eq!(all[0], 1);
    for pair in all.windows(2) {
        // Strictly increasing with no gap: nothing failed to write, and the restart took
        // over from the last complete record.
        assert_eq!(pair[1], pair[0] + 1, "seq {} follows {}", pair[1], pair[0]);
    }
    assert_eq!(all[before.len()], seqs(&before).last().unwrap() + 1);
}

/// DL-03 rotation: rename + SIGUSR1 four times under load; the files together hold exactly
/// `sluice_log_events_written_total` lines, and their seqs are 1..=N with no gap or repeat.
#[test]
fn dl03_rotation_under_load_loses_and_repeats_nothing() {
    let (w, log) = log_world(&[]);
    let load = Load::start(&w, 3);
    let mut files = Vec::new();
    for i in 1..=4 {
        wait_lines(&log, 200);
        let rotated = w.gw.dir().join(format!("access.log.{i}"));
        std::fs::rename(&log, &rotated).unwrap();
        let kill = Command::new("kill")
            .args(["-USR1", &w.gw.pid().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        files.push(rotated);
    }
    // The last SIGUSR1 took effect once the fresh file fills.
    wait_lines(&log, 200);
    assert!(load.stop() > 0);
    files.push(log);
    let (emitted, written, dropped) = settled(&w);
    let all = records(&files);
    assert_eq!(all.len() as u64, written, "Σ lines == events_written_total");
    assert_eq!(emitted, written + dropped);
    assert_eq!(dropped, 0, "nothing dropped while the disk was fine");
    let mut numbers = seqs(&all);
    numbers.sort_unstable();
    let expected: Vec<u64> = (1..=all.len() as u64).collect();
    assert!(
        numbers == expected,
        "seqs are not 1..={} without gaps or repeats",
        all.len()
    );
    for f in &files[..4] {
        assert!(line_count(f) > 0, "{} got records", f.display());
    }
}

/// DL-03 sink full, default `log.fail = "open"`: the proxy keeps serving, records are dropped
/// and counted, the file never holds a partial line, and logging resumes by itself.
#[test]
fn dl03_sink_full_fails_open_and_recovers_without_restart() {
    let (w, log) = log_world(&[]);
    let pid = w.gw.pid();
    for _ in 0..3 {
        assert!(refused_reply(&w).starts_with("HTTP/1.1 403"));
    }
    let (_, written, _) = settled(&w);
    assert_eq!(line_count(&log) as u64, written);
    // Room for part of a record: the first failing batch is a short write that must be cut.
    let size = std::fs::metadata(&log).unwrap().len();
    set_fsize(pid, &(size + 150).to_string());

    let load = Load::start(&w, 2);
    let dropped = wait_metric(&w, "sluice_log_events_dropped_total", |v| v >= 50);
    let r = curl_response_via(&w.gw, &w.url("origin.test", "/while-full"), &[]);
    assert_eq!(
        r.http_code, 200,
        "fail open keeps serving: {}",
        r.output.stderr
    );
    let ready = admin(&w.gw, "/ready", &[]);
    assert_eq!(ready.http_code, 200);
    assert!(
        ready.body_str().starts_with("degraded log_unavailable"),
        "{}",
        ready.body_str()
    );
    assert!(load.stop() > 0);
    let full = records(std::slice::from_ref(&log));
    assert!(std::fs::metadata(&log).unwrap().len() <= size + 150);

    set_fsize(pid, "unlimited");
    let load = Load::start(&w, 2);
    wait_lines(&log, full.len() + 100);
    assert!(load.stop() > 0);
    let (emitted, written, dropped_now) = settled(&w);
    assert!(dropped_now >= dropped);
    assert_eq!(emitted, written + dropped_now);
    let ready = admin(&w.gw, "/ready", &[]);
    assert!(
        ready.body_str().starts_with("ready"),
        "{}",
        ready.body_str()
    );

    let all = records(&[log]);
    assert_eq!(all.len() as u64, written);
    let numbers = seqs(&all);
    assert!(
        numbers.windows(2).all(|p| p[1] > p[0]),
        "seqs strictly increase"
    );
    // Numbers of lost records are never reused: the gaps are the failed writes' records
    // (records dropped at a full queue never got a number).
    let text = metrics_text(&w);
    let queue_full = sample(&text, "sluice_access_log_dropped_total");
    let gaps = numbers.last().unwrap() - numbers.len() as u64;
    assert_eq!(gaps, dropped_now - queue_full);
}

/// DL-03 strict mode, `log.fail = "closed"`: while the log cannot be written, new requests
/// get 503 `log_unavailable` and `/ready` says 503; once it can, they are served again.
#[test]
fn dl03_fail_closed_refuses_new_requests_until_the_log_is_writable() {
    let (w, log) = log_world(&[("log.fail", "closed")]);
    let pid = w.gw.pid();
    let url = w.url("origin.test", "/strict");
    assert_eq!(curl_response_via(&w.gw, &url, &[]).http_code, 200);
    settled(&w);
    let size = std::fs::metadata(&log).unwrap().len();
    set_fsize(pid, &size.to_string());

    // The first record that fails to write flips the gateway into refusing.
    let started = Instant::now();
    let refusal = loop {
        let reply = refused_reply(&w);
        if reply.starts_with("HTTP/1.1 503") {
            break reply;
        }
        assert!(started.elapsed() < DEADLINE, "never refused: {reply}");
    };
    assert!(
        refusal
            .to_ascii_lowercase()
            .contains("x-sluice-reason: log_unavailable"),
        "{refusal}"
    );
    let r = curl_response_via(&w.gw, &url, &[]);
    assert_ne!(r.http_code, 200, "no request is served unrecorded");
    assert!(r.output.stderr.contains("503"), "{}", r.output.stderr);
    let ready = admin(&w.gw, "/ready", &[]);
    assert_eq!(ready.http_code, 503, "{}", ready.body_str());
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        size,
        "nothing partial written"
    );

    set_fsize(pid, "unlimited");
    // Each refusal is logged too, and its write is the retry that clears the state.
    let started = Instant::now();
    loop {
        let r = curl_response_via(&w.gw, &url, &[]);
        if r.http_code == 200 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "never served again: {}",
            r.output.stderr
        );
    }
    assert_eq!(admin(&w.gw, "/ready", &[]).http_code, 200);
    let all = records(&[log]);
    assert!(all
        .iter()
        .any(|r| r["reason"] == "log_unavailable" && r["status"] == 503));
}

/// What one DL-01 client did, and what its record must say: (decision, reason).
#[derive(Clone, Copy, Debug)]
enum Mixed {
    Bypass,
    Decrypt,
    Block,
    UpstreamError,
    ClientAbort,
}

impl Mixed {
    fn expected(self) -> (Value, &'static str) {
        match self {
            Self::Bypass => ("bypass".into(), "policy"),
            Self::Decrypt => ("decrypt".into(), "default"),
            Self::Block => ("block".into(), "blocked:domain"),
            Self::UpstreamError => ("block".into(), "upstream_refused"),
            Self::ClientAbort => (Value::Null, "client_closed_before_hello"),
        }
    }
}

#[test]
fn dl01_one_complete_record_per_connection_in_a_mixed_workload() {
    const EACH: usize = 200;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let names = ["ok.test", "exempt.test", "blocked.test", "refused.test"];
    let dir = tempfile::tempdir().unwrap();
    let pki = sluice_test_support::TestPki::new(dir.path());
    let leaf = pki.leaf(&names, LeafOpts::default());
    let origin = sluice_test_support::TestOrigin::builder()
        .tls(&leaf)
        .name("ok.test")
        .start_blocking();
    let cfg = sluice_test_support::GatewayConfig::for_pki(&pki)
        .hosts(&names)
        .connect_ports(&[origin.port(), closed_port])
        .extra_toml(
            "[[policy]]\nname = \"default\"\nbypass = { domains = [\"exempt.test\"] }\n\
             block = { domains = [\"blocked.test\"] }\n",
        );
    let gw = sluice_test_support::TestGateway::start(crate::BIN, cfg);
    let kinds: Vec<Mixed> = [
        Mixed::Bypass,
        Mixed::Decrypt,
        Mixed::Block,
        Mixed::UpstreamError,
        Mixed::ClientAbort,
    ]
    .iter()
    .flat_map(|k| std::iter::repeat_n(*k, EACH))
    .collect();
    let proxy = gw.proxy_addr();
    let port = origin.port();
    let root = pki.root_pem_path().to_path_buf();
    let ca = gw.ca_pem_path().to_path_buf();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let done = rt.block_on(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = Vec::new();
        for kind in kinds {
            let permit = permits.clone().acquire_owned().await.unwrap();
            let (root, ca) = (root.clone(), ca.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                use sluice_test_support::clients::{http_get, tls_over_tunnel, try_connect_tunnel};
                let ok = match kind {
                    Mixed::Bypass | Mixed::Decrypt => {
                        let (host, trust) = match kind {
                            Mixed::Bypass => ("exempt.test", &root),
                            _ => ("ok.test", &ca),
                        };
                        let target = format!("{host}:{port}");
                        let (reply, s) = try_connect_tunnel(proxy, &target, &[]).await.unwrap();
                        assert_eq!(reply.status, 200);
                        let tls = tls_over_tunnel(s, Some(host), trust, &["http/1.1"])
                            .await
                            .unwrap();
                        http_get(tls, host, "/").await.unwrap().status == 200
                    }
                    Mixed::Block => {
                        let target = format!("blocked.test:{port}");
                        try_connect_tunnel(proxy, &target, &[])
                            .await
                            .unwrap()
                            .0
                            .status
                            == 403
                    }
                    Mixed::UpstreamError => {
                        let target = format!("refused.test:{closed_port}");
                        try_connect_tunnel(proxy, &target, &[])
                            .await
                            .unwrap()
                            .0
                            .status
                            == 502
                    }
                    Mixed::ClientAbort => {
                        let target = format!("ok.test:{port}");
                        let (reply, s) = try_connect_tunnel(proxy, &target, &[]).await.unwrap();
                        drop(s);
                        reply.status == 200
                    }
                };
                (kind, ok)
            }));
        }
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap());
        }
        done
    });
    let failed: Vec<_> = done.iter().filter(|(_, ok)| !ok).collect();
    assert!(failed.is_empty(), "client-side failures: {failed:?}");

    let (emitted, written, dropped) = settled_gw(&gw);
    assert_eq!(dropped, 0);
    let records = gw.access_log();
    assert_eq!(
        records.len() as u64,
        written,
        "every written record is in the log"
    );
    assert_eq!(emitted, written);
    let connects: Vec<&Value> = records.iter().filter(|r| r["kind"] == "connect").collect();
    assert_eq!(
        connects.len(),
        5 * EACH,
        "exactly one connect record per connection"
    );
    let mut ids: Vec<u64> = connects
        .iter()
        .map(|r| r["conn_id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5 * EACH, "conn_id unique");
    for kind in [
        Mixed::Bypass,
        Mixed::Decrypt,
        Mixed::Block,
        Mixed::UpstreamError,
        Mixed::ClientAbort,
    ] {
        let (decision, reason) = kind.expected();
        let n = connects
            .iter()
            .filter(|r| r["decision"] == decision && r["reason"] == reason)
            .count();
        assert_eq!(n, EACH, "{kind:?}: records with {decision} {reason}");
    }
    for r in &connects {
        assert!(r["host"].is_string() && r["port"].is_u64(), "{r}");
        assert!(r["duration_ms"].is_u64() && r["bytes_up"].is_u64(), "{r}");
        if r["decision"] == "decrypt" {
            assert!(r["dest"].is_string() && r["sni"].is_string(), "{r}");
            assert!(r["client_tls_version"].is_string(), "{r}");
            assert!(r["upstream_cert"].is_object(), "{r}");
        }
        if r["decision"] == "bypass" {
            assert!(r["dest"].is_string() && r["sni"] == "exempt.test", "{r}");
        }
    }
    let requests = records.iter().filter(|r| r["kind"] == "request").count();
    assert_eq!(requests, EACH, "one request record per decrypted request");
}
