//! Inspection of decrypted and plain-HTTP traffic end to end: URL rules, file types by content
//! (a lying extension and Content-Type do not help), SHA-256 blocklists, uploads, and the
//! guarantee that bypassed traffic is never inspected.

use sha2::{Digest as _, Sha256};
use sluice_test_support::origin::pattern;
use sluice_test_support::{curl, curl_response_via, LeafOpts, Misbehave, TestOrigin};

use crate::{World, LOG_WAIT};

/// A minimal PE header: what `file(1)` and the gateway recognise as a Windows executable.
fn windows_exe() -> Vec<u8> {
    let mut exe = vec![0u8; 1024];
    exe[0] = b'M';
    exe[1] = b'Z';
    exe[0x3c] = 0x80;
    exe[0x80..0x84].copy_from_slice(b"PE\0\0");
    exe
}

#[test]
fn url_rules_block_one_path_of_an_allowed_site() {
    let w = World::new(
        &["origin.test"],
        "[[policy]]\nname = \"default\"\nblock = { urls = [\"origin.test/downloads/*\"] }\n",
    );
    let res = curl_response_via(&w.gw, &w.url("origin.test", "/downloads/setup.bin"), &[]);
    assert_eq!(res.http_code, 403);
    assert_eq!(res.header("x-sluice-reason"), Some("blocked:url"));
    assert!(
        res.body_str().contains("origin.test/downloads/*"),
        "the page names the rule"
    );
    // Spelling tricks resolve to the same path.
    let res = curl_response_via(
        &w.gw,
        &w.url("origin.test", "/x/../downloads/setup.bin"),
        &["--path-as-is"],
    );
    assert_eq!(res.http_code, 403);
    let res = curl_response_via(&w.gw, &w.url("origin.test", "/docs/readme"), &[]);
    assert_eq!(res.http_code, 200);
    assert!(
        w.origin
            .requests()
            .iter()
            .all(|r| !r.path.contains("downloads")),
        "blocked requests never reach the origin"
    );
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "request" && r["reason"] == "blocked:url",
        LOG_WAIT,
    );
    assert!(
        rec["inspection"]
            .as_str()
            .unwrap()
            .starts_with("blocked:url"),
        "{rec}"
    );
}

#[test]
fn file_types_are_judged_by_content_not_by_name() {
    let exe = windows_exe();
    let mut raw = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        exe.len()
    )
    .into_bytes();
    raw.extend_from_slice(&exe);
    let dir = tempfile::tempdir().unwrap();
    let pki = sluice_test_support::TestPki::new(dir.path());
    let leaf = pki.leaf(&["files.test"], LeafOpts::default());
    let origin = TestOrigin::builder()
        .tls(&leaf)
        .name("files.test")
        .misbehave(Misbehave::RawResponse(raw))
        .start_blocking();
    let cfg = sluice_test_support::GatewayConfig::for_pki(&pki)
        .hosts(&["files.test"])
        .connect_ports(&[origin.port()])
        .extra_toml("[[policy]]\nname = \"default\"\nblock = { file_types = [\"exe\"] }\n");
    let gw = sluice_test_support::TestGateway::start(crate::BIN, cfg);
    let res = curl_response_via(&gw, &origin.url("files.test", "/readme.txt"), &[]);
    assert_eq!(
        res.http_code, 403,
        "an executable named .txt with text/plain is still an executable"
    );
    assert_eq!(res.header("x-sluice-reason"), Some("blocked:file_type"));
    assert!(
        !res.body.windows(2).any(|w| w == b"MZ"),
        "no byte of the file reaches the client"
    );
    let rec = gw.wait_for_log(
        |r| r["kind"] == "request" && r["reason"] == "blocked:file_type",
        LOG_WAIT,
    );
    assert_eq!(rec["inspection"], "blocked:file_type exe");
}

#[test]
fn uploads_and_hash_lists_are_checked_and_clean_bodies_arrive_intact() {
    let blocked = pattern(0, 1000);
    let hash = hex::encode(Sha256::digest(&blocked));
    let w = World::with(&["origin.test"], LeafOpts::default(), |c| {
        c.file("bad.sha256", format!("# test list\n{hash}\n")).extra_toml(
            "[[policy]]\nname = \"default\"\nblock = { file_types = [\"exe\"], hashes = [\"bad.sha256\"] }\n",
        )
    });
    // A download whose SHA-256 is listed.
    let res = curl_response_via(&w.gw, &w.url("origin.test", "/bytes/1000"), &[]);
    assert_eq!(res.http_code, 403);
    assert_eq!(res.header("x-sluice-reason"), Some("blocked:hash"));
    // A clean download of a few MiB is delivered byte for byte.
    let res = curl_response_via(&w.gw, &w.url("origin.test", "/bytes/3000001"), &[]);
    assert_eq!(res.http_code, 200);
    assert_eq!(res.body, pattern(0, 3_000_001));
    let rec = w.gw.wait_for_log(
        |r| {
            r["kind"] == "request"
                && r["url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/bytes/3000001"))
        },
        LOG_WAIT,
    );
    assert_eq!(rec["inspection"], "clean");
    // An executable uploaded in a POST body.
    let upload = w._dir.path().join("tool.dat");
    std::fs::write(&upload, windows_exe()).unwrap();
    let arg = format!("@{}", upload.display());
    let res = curl_response_via(
        &w.gw,
        &w.url("origin.test", "/echo"),
        &["--data-binary", &arg, "-H", "Content-Type: text/plain"],
    );
    assert_eq!(res.http_code, 403);
    assert_eq!(res.header("x-sluice-reason"), Some("blocked:file_type"));
    assert!(
        w.origin.requests().iter().all(|r| r.path != "/echo"),
        "the upload never reached the origin"
    );
}

#[test]
fn bypassed_traffic_is_never_inspected_and_plain_http_is() {
    let w = World::new(
        &["bank.test", "origin.test"],
        "[[policy]]\nname = \"default\"\nbypass = { domains = [\"bank.test\"] }\nblock = { urls = [\"bank.test/*\", \"plain.test/secret\"] }\n",
    );
    let root = w.root().to_str().unwrap().to_owned();
    let url = w.url("bank.test", "/anything");
    let out = curl(&[
        "--proxy",
        &w.gw.proxy_url(),
        "--cacert",
        &root,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "a bypass is not decrypted, so URL rules cannot apply"
    );
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "bank.test",
        LOG_WAIT,
    );
    assert_eq!(rec["inspection"], "skipped:bypass");
    let plain = TestOrigin::builder().name("plain.test").start_blocking();
    let dir = tempfile::tempdir().unwrap();
    let pki = sluice_test_support::TestPki::new(dir.path());
    let cfg = sluice_test_support::GatewayConfig::for_pki(&pki)
        .hosts(&["plain.test"])
        .extra_toml("[[policy]]\nname = \"default\"\nblock = { urls = [\"plain.test/secret\"] }\n");
    let gw = sluice_test_support::TestGateway::start(crate::BIN, cfg);
    let out = curl(&[
        "--proxy",
        &gw.proxy_url(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &plain.url("plain.test", "/secret"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    let out = curl(&[
        "--proxy",
        &gw.proxy_url(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &plain.url("plain.test", "/public"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

/// The c-icap + ClamAV lab of `sluice-inspect`'s tests (`scripts/icap-lab`).
#[path = "../../../inspect/tests/it/support.rs"]
#[allow(dead_code, unreachable_pub)]
mod icap_lab;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn raw_origin(name: &str, pki: &sluice_test_support::TestPki, body: &[u8]) -> TestOrigin {
    let leaf = pki.leaf(&[name], LeafOpts::default());
    let mut raw = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    TestOrigin::builder()
        .tls(&leaf)
        .name(name)
        .misbehave(Misbehave::RawResponse(raw))
        .start_blocking()
}

#[test]
fn icap_antivirus_blocks_eicar_both_ways_and_fails_closed() {
    let lab = icap_lab::IcapLab::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = sluice_test_support::TestPki::new(dir.path());
    let evil = raw_origin("evil.test", &pki, EICAR);
    let good = TestOrigin::builder()
        .tls(&pki.leaf(&["good.test"], LeafOpts::default()))
        .name("good.test")
        .start_blocking();
    let gateway = |icap: &str, fail: &str| {
        let cfg = sluice_test_support::GatewayConfig::for_pki(&pki)
            .hosts(&["evil.test", "good.test"])
            .connect_ports(&[evil.port(), good.port()])
            .extra_toml(&format!(
                "[inspect]\nicap = \"{icap}\"\nfail = \"{fail}\"\n"
            ));
        sluice_test_support::TestGateway::start(crate::BIN, cfg)
    };
    let gw = gateway(&lab.url, "closed");
    // A download carrying EICAR: a block page naming the signature.
    let res = curl_response_via(&gw, &evil.url("evil.test", "/eicar.com"), &[]);
    assert_eq!(res.http_code, 403, "{}", res.body_str());
    assert_eq!(res.header("x-sluice-reason"), Some("blocked:malware"));
    assert!(
        res.body_str().contains("Eicar-Test-Signature"),
        "{}",
        res.body_str()
    );
    let rec = gw.wait_for_log(
        |r| r["kind"] == "request" && r["reason"] == "blocked:malware",
        LOG_WAIT,
    );
    assert!(
        rec["inspection"]
            .as_str()
            .unwrap()
            .contains("Eicar-Test-Signature"),
        "{rec}"
    );
    // A clean download arrives byte for byte.
    let res = curl_response_via(&gw, &good.url("good.test", "/bytes/1048576"), &[]);
    assert_eq!(res.http_code, 200);
    assert_eq!(res.body, pattern(0, 1_048_576));
    // EICAR uploaded in a POST body never reaches the origin.
    let upload = dir.path().join("eicar.txt");
    std::fs::write(&upload, EICAR).unwrap();
    let arg = format!("@{}", upload.display());
    let res = curl_response_via(
        &gw,
        &good.url("good.test", "/echo"),
        &["--data-binary", &arg],
    );
    assert_eq!(res.http_code, 403);
    assert!(good.requests().iter().all(|r| r.path != "/echo"));
    // The scanner unreachable: closed blocks, open delivers.
    let dead = format!("icap://127.0.0.1:{}/avscan", free_port());
    let closed = gateway(&dead, "closed");
    let res = curl_response_via(&closed, &good.url("good.test", "/bytes/100"), &[]);
    assert_eq!(res.http_code, 403);
    assert_eq!(res.header("x-sluice-reason"), Some("blocked:scan_failed"));
    let open = gateway(&dead, "open");
    let res = curl_response_via(&open, &good.url("good.test", "/bytes/100"), &[]);
    assert_eq!(res.http_code, 200);
    assert_eq!(res.body, pattern(0, 100));
    let rec = open.wait_for_log(|r| r["kind"] == "request", LOG_WAIT);
    assert_eq!(rec["inspection"], "error:icap_unreachable", "{rec}");
}

#[test]
fn a_stalled_scanner_fails_closed_within_its_timeout_ft06() {
    // An ICAP server that accepts and never answers.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("icap://{}/avscan", stalled.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        while let Ok((c, _)) = stalled.accept() {
            conns.push(c);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let pki = sluice_test_support::TestPki::new(dir.path());
    let good = TestOrigin::builder()
        .tls(&pki.leaf(&["good.test"], LeafOpts::default()))
        .name("good.test")
        .start_blocking();
    let cfg = sluice_test_support::GatewayConfig::for_pki(&pki)
        .hosts(&["good.test"])
        .connect_ports(&[good.port()])
        .extra_toml(&format!(
            "[inspect]\nicap = \"{url}\"\nicap_timeout = \"1s\"\n"
        ));
    let gw = sluice_test_support::TestGateway::start(crate::BIN, cfg);
    let started = std::time::Instant::now();
    let res = curl_response_via(&gw, &good.url("good.test", "/bytes/100"), &[]);
    assert_eq!(res.http_code, 403, "fails closed by default");
    assert_eq!(res.header("x-sluice-reason"), Some("blocked:scan_failed"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "bounded by inspect.icap_timeout, took {:?}",
        started.elapsed()
    );
    let rec = gw.wait_for_log(|r| r["kind"] == "request", LOG_WAIT);
    assert!(
        rec["inspection"]
            .as_str()
            .unwrap_or("")
            .starts_with("error:"),
        "{rec}"
    );
    drop(held);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
