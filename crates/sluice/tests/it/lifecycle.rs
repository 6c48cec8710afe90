//! The gateway's life: embedded defaults with no config at all, data-dir resolution, graceful
//! shutdown, CA handling at start and on reload.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_test_support::{curl, curl_response};

use crate::{World, BIN, LOG_WAIT};

/// `sluice run` with no config listens on the documented defaults and creates the CA in
/// `$SLUICE_DATA_DIR`. (Uses the fixed default ports 3128/9128: that is what is under test.)
#[test]
fn runs_with_embedded_defaults_and_no_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("run")
        .env("SLUICE_DATA_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Warnings may come first (the temp dir is 0755: tightened to 0700, and logged).
    let ready = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.starts_with("sluice ready"))
        .expect("a ready line");
    let hint = lines.next().expect("a hint line").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let ca = dir.path().join("ca/sluice-ca.pem");
    assert_eq!(
        ready,
        format!(
            "sluice ready proxy=127.0.0.1:3128 admin=127.0.0.1:9128 ca={}",
            ca.display()
        )
    );
    assert!(
        hint.contains("curl --proxy http://127.0.0.1:3128 --cacert")
            && hint.contains("https://example.com/"),
        "{hint}"
    );
    assert!(ca.exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let key = dir.path().join("ca/sluice-ca.key");
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn sigterm_lets_in_flight_transfers_finish() {
    let mut w = World::new(
        &["origin.test"],
        "[proxy.timeouts]\nshutdown_grace = \"20s\"\n",
    );
    let url = w.url("origin.test", "/bytes/1000000");
    let ca = w.gw.ca_pem_path().to_str().unwrap().to_owned();
    let download = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "--limit-rate",
            "200k",
            "--proxy",
            &w.gw.proxy_url(),
            "--cacert",
            &ca,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            &url,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the transfer is under way (its request reached the origin).
    let started = Instant::now();
    while w.origin.requests().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "download never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    let status = w.gw.terminate();
    assert!(status.success(), "clean exit after draining: {status:?}");
    assert!(
        signalled.elapsed() > Duration::from_secs(1),
        "the gateway waited for the transfer"
    );
    let out = download.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 1000000",
        "the in-flight download completed"
    );
    // After shutdown nothing listens any more.
    let res = curl(&["--proxy", &w.gw.proxy_url(), "--cacert", &ca, &url]);
    assert_ne!(res.code, 0);
}

#[test]
fn a_readable_ca_key_refuses_to_start() {
    let mut gw =
        sluice_test_support::TestGateway::prepare(BIN, sluice_test_support::GatewayConfig::new());
    gw.launch();
    let key = gw.data_dir().join("ca/sluice-ca.key");
    gw.terminate();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = gw
        .try_launch()
        .expect_err("a group/world-readable CA key must refuse the start");
    assert!(err.stderr.contains("readable"), "{err:?}");
}

#[test]
fn sigusr1_reopens_the_access_log_for_logrotate() {
    let w = World::with(
        &["origin.test"],
        sluice_test_support::LeafOpts::default(),
        |c| c.set("log.access", "access.log"),
    );
    let log = w.gw.dir().join("access.log");
    let rotated = w.gw.dir().join("access.log.1");
    let wait_for = |path: &std::path::Path, needle: &str| {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{needle} never appeared in {}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    sluice_test_support::curl_response_via(&w.gw, &w.url("origin.test", "/first"), &[]);
    wait_for(&log, "/first");
    std::fs::rename(&log, &rotated).unwrap();
    let kill = Command::new("kill")
        .args(["-USR1", &w.gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The reopen happens before the next record is written.
    sluice_test_support::curl_response_via(&w.gw, &w.url("origin.test", "/second"), &[]);
    let fresh = wait_for(&log, "/second");
    assert!(!fresh.contains("/first"));
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("/second"));
    for line in fresh.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("whole JSON lines");
    }
}

#[test]
fn a_corrupt_ca_key_refuses_to_start_and_is_never_replaced_ft05() {
    let mut gw =
        sluice_test_support::TestGateway::prepare(BIN, sluice_test_support::GatewayConfig::new());
    gw.launch();
    let cert = gw.data_dir().join("ca/sluice-ca.pem");
    let key = gw.data_dir().join("ca/sluice-ca.key");
    let cert_before = std::fs::read(&cert).unwrap();
    gw.terminate();
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = gw
        .try_launch()
        .expect_err("a corrupt CA key must refuse the start");
    assert!(err.stderr.contains("sluice-ca.key"), "{err:?}");
    assert_eq!(std::fs::read(&cert).unwrap(), cert_before, "CA replaced");
    std::fs::remove_file(&key).unwrap();
    let err = gw
        .try_launch()
        .expect_err("a missing CA key must refuse the start");
    assert!(err.stderr.contains("refusing to generate"), "{err:?}");
    assert!(!key.exists(), "no replacement key");
}

#[test]
fn a_ca_lost_at_runtime_fails_decryption_closed_ft05() {
    let w = World::new(
        &["ok.test", "exempt.test"],
        "[[policy]]\nname = \"default\"\nbypass = { domains = [\"exempt.test\"] }\n",
    );
    let key = w.gw.data_dir().join("ca/sluice-ca.key");
    let good_key = std::fs::read(&key).unwrap();
    let ca = w.gw.ca_pem_path().to_str().unwrap().to_owned();
    let root = w.root().to_str().unwrap().to_owned();
    let decrypted = || {
        curl_response(&[
            "--proxy",
            &w.gw.proxy_url(),
            "--cacert",
            &ca,
            &w.url("ok.test", "/"),
        ])
    };
    assert_eq!(decrypted().http_code, 200);
    let ready = || curl_response(&[&format!("{}/ready", w.gw.admin_url())]);
    assert_eq!(ready().http_code, 200);

    // The key is damaged (root ignores file modes, so corruption rather than chmod 000).
    std::fs::write(&key, b"garbage").unwrap();
    w.gw.sighup();
    w.gw.wait_for_stderr("sluice CA unavailable", LOG_WAIT);
    let before = w.origin.requests().len();
    let res = decrypted();
    assert_ne!(res.http_code, 200, "decryption must fail closed");
    assert_eq!(
        w.origin.requests().len(),
        before,
        "nothing reached the origin"
    );
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["reason"] == "mint_failed",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "block", "{rec}");
    // Bypass keeps working, and health says what is wrong.
    let bypassed = curl_response(&[
        "--proxy",
        &w.gw.proxy_url(),
        "--cacert",
        &root,
        &w.url("exempt.test", "/"),
    ]);
    assert_eq!(bypassed.http_code, 200, "{}", bypassed.output.stderr);
    let health = ready();
    assert_eq!(health.http_code, 503);
    assert!(
        health.body_str().contains("ca_unavailable"),
        "{}",
        health.body_str()
    );

    // Restored and reloaded: decryption is back.
    std::fs::write(&key, good_key).unwrap();
    w.gw.sighup();
    w.gw.wait_for_stderr("sluice CA loaded", LOG_WAIT);
    assert_eq!(decrypted().http_code, 200);
    assert_eq!(ready().http_code, 200);
}
