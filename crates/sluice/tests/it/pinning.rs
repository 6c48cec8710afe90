//! Certificate-pinning detection, learning and review, end to end with real pinning clients
//! (`curl --pinnedpubkey`) and real non-pinning ones.

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_test_support::clients::s_client_issuer_cn;
use sluice_test_support::pki::INTERMEDIATE_CN;
use sluice_test_support::{curl, curl_response, openssl_s_client};

use crate::{World, LOG_WAIT};

/// A CA bundle with the gateway CA and the test root: a client that trusts both, so only its
/// pin decides whether it accepts a connection.
fn bundle(w: &World) -> String {
    let path = w._dir.path().join("bundle.pem");
    let mut pem = std::fs::read_to_string(w.gw.ca_pem_path()).unwrap();
    pem.push_str(&std::fs::read_to_string(w.root()).unwrap());
    std::fs::write(&path, pem).unwrap();
    path.to_str().unwrap().to_owned()
}

fn pinned_curl(w: &World, bundle: &str) -> sluice_test_support::CurlResponse {
    let pin = format!("sha256//{}", w.leaf.spki_sha256_b64);
    curl_response(&[
        "--proxy",
        &w.gw.proxy_url(),
        "--cacert",
        bundle,
        "--pinnedpubkey",
        &pin,
        &w.url("pinned.test", "/"),
    ])
}

fn pinning_list(w: &World) -> Value {
    let out = w.gw.run_cli(&["pinning", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn suspect<'a>(list: &'a Value, host: &str) -> Option<&'a Value> {
    list["suspects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["host"] == host)
}

/// Retries `f` until it returns true or `limit` passes (the gateway follows the store by
/// polling it every second).
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn pinned_client_is_detected_learned_and_others_stay_decrypted() {
    let w = World::new(&["pinned.test"], "[pinning]\nmode = \"learn\"\n");
    let bundle = bundle(&w);
    for i in 0..3 {
        let res = pinned_curl(&w, &bundle);
        assert_eq!(
            res.output.code, 90,
            "attempt {i}: the pinning client must refuse the minted leaf"
        );
    }
    w.gw.wait_for_logs(
        |r| r["kind"] == "connect" && r["error"] == "closed-after-handshake",
        3,
        LOG_WAIT,
    );
    let found = eventually(Duration::from_secs(10), || {
        suspect(&pinning_list(&w), "pinned.test").is_some_and(|s| s["status"] == "learned")
    });
    assert!(
        found,
        "the host must become a learned suspect: {}",
        pinning_list(&w)
    );
    let list = pinning_list(&w);
    let s = suspect(&list, "pinned.test").unwrap();
    assert_eq!(s["count"], 3);
    assert_eq!(s["signals"][0]["signal"], "closed-after-handshake");

    // The pinning client now works, and sees the origin's own certificate.
    let mut last = None;
    let ok = eventually(Duration::from_secs(10), || {
        let res = pinned_curl(&w, &bundle);
        let ok = res.http_code == 200;
        last = Some(res);
        ok
    });
    let last = last.unwrap();
    assert!(
        ok,
        "learned bypass must apply without a restart: {}",
        last.output.stderr
    );
    assert_eq!(last.issuer_cn().as_deref(), Some(INTERMEDIATE_CN));
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["reason"] == "learned",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "bypass");
    assert!(rec["evidence"].as_u64().unwrap() >= 3, "{rec}");

    // A different client (another fingerprint) to the same host is still decrypted.
    let ca = w.gw.ca_pem_path().to_str().unwrap().to_owned();
    let target = format!("pinned.test:{}", w.origin.port());
    let out = openssl_s_client(
        w.gw.proxy_addr(),
        &target,
        &["-servername", "pinned.test", "-CAfile", &ca],
        b"",
    );
    assert_ne!(
        s_client_issuer_cn(&out).as_deref(),
        Some(INTERMEDIATE_CN),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["decision"] == "decrypt" && r["ja4"] != last_ja4(&w),
        LOG_WAIT,
    );
    assert_eq!(rec["sni"], "pinned.test");

    // Learned state survives a restart.
    let mut gw = w.gw;
    gw.restart();
    let pin = format!("sha256//{}", w.leaf.spki_sha256_b64);
    let url = w.origin.url("pinned.test", "/");
    let ok = eventually(Duration::from_secs(10), || {
        curl_response(&[
            "--proxy",
            &gw.proxy_url(),
            "--cacert",
            &bundle,
            "--pinnedpubkey",
            &pin,
            &url,
        ])
        .http_code
            == 200
    });
    assert!(ok, "learned bypass must survive a restart");
}

fn last_ja4(w: &World) -> Value {
    w.gw.access_log()
        .iter()
        .rev()
        .find(|r| r["reason"] == "learned")
        .map(|r| r["ja4"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn report_mode_only_reports_and_approve_makes_a_permanent_exception() {
    let w = World::new(&["pinned.test"], "");
    let bundle = bundle(&w);
    for _ in 0..3 {
        assert_eq!(pinned_curl(&w, &bundle).output.code, 90);
    }
    let found = eventually(Duration::from_secs(10), || {
        suspect(&pinning_list(&w), "pinned.test").is_some_and(|s| s["count"] == 3)
    });
    assert!(found, "{}", pinning_list(&w));
    assert_eq!(
        suspect(&pinning_list(&w), "pinned.test").unwrap()["status"],
        "suspect"
    );
    assert_eq!(
        pinned_curl(&w, &bundle).output.code,
        90,
        "report mode never bypasses"
    );

    let out = w.gw.run_cli(&[
        "pinning",
        "approve",
        "pinned.test",
        "--scope",
        "host",
        "--note",
        "vendor app pins",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = eventually(Duration::from_secs(10), || {
        pinned_curl(&w, &bundle).http_code == 200
    });
    assert!(
        ok,
        "approval must apply to the running gateway within seconds"
    );
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["reason"] == "approved",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "bypass");
    let list = pinning_list(&w);
    assert_eq!(list["approved"][0]["host"], "pinned.test");
    assert_eq!(list["approved"][0]["note"], "vendor app pins");

    let export = w.gw.run_cli(&["pinning", "export"]);
    assert!(export.status.success());
}

#[test]
fn client_without_the_ca_is_observed_as_unknown_ca() {
    let w = World::new(&["pinned.test"], "");
    let target = format!("pinned.test:{}", w.origin.port());
    let root = w.root().to_str().unwrap().to_owned();
    let out = openssl_s_client(
        w.gw.proxy_addr(),
        &target,
        &[
            "-servername",
            "pinned.test",
            "-CAfile",
            &root,
            "-verify_return_error",
        ],
        b"",
    );
    assert!(!out.status.success());
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "pinned.test",
        LOG_WAIT,
    );
    assert_eq!(rec["error"], "alert:unknown_ca", "{rec}");
    let found = eventually(Duration::from_secs(10), || {
        pinning_list(&w)["suspects"]
            .as_array()
            .is_some_and(|a| a.is_empty())
            && w.gw.run_cli(&["pinning", "export"]).status.success()
    });
    assert!(found);
    let out = w.gw.run_cli(&["pinning", "list", "--json"]);
    let _: Value = serde_json::from_slice(&out.stdout).unwrap();
    let db = sluice_store::Store::open(&w.gw.data_dir().join("sluice.db")).unwrap();
    let ok = eventually(Duration::from_secs(5), || {
        db.observations(Some("pinned.test"), 10)
            .unwrap()
            .iter()
            .any(|o| o.signal == "alert:unknown_ca")
    });
    assert!(ok, "the observation must be stored");
}

#[test]
fn ordinary_clients_never_produce_observations() {
    let w = World::new(&["pinned.test"], "");
    let ca = w.gw.ca_pem_path().to_str().unwrap().to_owned();
    let url = w.url("pinned.test", "/");
    for _ in 0..20 {
        let out = curl(&[
            "--proxy",
            &w.gw.proxy_url(),
            "--cacert",
            &ca,
            "-o",
            "/dev/null",
            &url,
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    // A client that completes the handshake and then idles for 5 s before closing.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tunnel = sluice_test_support::connect_tunnel(
            w.gw.proxy_addr(),
            &format!("pinned.test:{}", w.origin.port()),
        )
        .await;
        let opts = sluice_test_support::clients::TlsClientOptions::new("pinned.test")
            .root(w.gw.ca_pem_path());
        let tls = sluice_test_support::clients::tls_over_tunnel_with(tunnel, &opts)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(tls);
    });
    drop(rt);
    w.gw.wait_for_logs(|r| r["kind"] == "connect", 21, LOG_WAIT);
    let db = sluice_store::Store::open(&w.gw.data_dir().join("sluice.db")).unwrap();
    assert!(
        db.observations(None, 100).unwrap().is_empty(),
        "no observation from well-behaved clients"
    );
    assert!(w
        .gw
        .access_log()
        .iter()
        .all(|r| r["error"] != "closed-after-handshake"));
}
