//! The admin listener end to end: the real binary, its generated token, real curl clients,
//! real pinning clients (`curl --pinnedpubkey`) and the approve call over HTTP.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_test_support::{curl_response, CurlResponse, GatewayConfig, TestGateway};

use crate::{World, BIN, LOG_WAIT};

/// The gateway's generated admin token.
pub(crate) fn token(gw: &TestGateway) -> String {
    std::fs::read_to_string(gw.data_dir().join("admin.token"))
        .expect("the gateway writes <data-dir>/admin.token")
        .trim()
        .to_owned()
}

/// `curl` against the admin listener with extra arguments (no token unless given).
pub(crate) fn admin(gw: &TestGateway, path: &str, extra: &[&str]) -> CurlResponse {
    let url = format!("{}{path}", gw.admin_url());
    let mut args: Vec<&str> = extra.to_vec();
    args.push(&url);
    curl_response(&args)
}

/// `GET path` with the bearer token; panics unless 200; the body as JSON when it is JSON.
pub(crate) fn admin_json(gw: &TestGateway, path: &str) -> Value {
    let auth = format!("Authorization: Bearer {}", token(gw));
    let r = admin(gw, path, &["-H", &auth]);
    assert_eq!(r.http_code, 200, "{path}: {}", r.body_str());
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// `POST path` with a JSON body and the bearer token.
pub(crate) fn admin_post(gw: &TestGateway, path: &str, body: &str) -> CurlResponse {
    let auth = format!("Authorization: Bearer {}", token(gw));
    admin(
        gw,
        path,
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ],
    )
}

/// A CA bundle with the gateway CA and the test root: only the pin decides.
pub(crate) fn bundle(w: &World) -> String {
    let path = w._dir.path().join("bundle.pem");
    let mut pem = std::fs::read_to_string(w.gw.ca_pem_path()).unwrap();
    pem.push_str(&std::fs::read_to_string(w.root()).unwrap());
    std::fs::write(&path, pem).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A pinning client: `curl --pinnedpubkey` with the origin's real key.
pub(crate) fn pinned_curl(w: &World, bundle: &str) -> CurlResponse {
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

/// Retries `f` until it holds or `limit` passes.
pub(crate) fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Three refused pinned connections, then waits until the API lists the suspect.
pub(crate) fn produce_suspect(w: &World, bundle: &str) {
    for i in 0..3 {
        let res = pinned_curl(w, bundle);
        assert_eq!(
            res.output.code, 90,
            "attempt {i}: the pin must refuse the minted leaf"
        );
    }
    let found = eventually(Duration::from_secs(10), || {
        admin_json(&w.gw, "/api/pinning")["suspects"]
            .as_array()
            .is_some_and(|s| {
                s.iter()
                    .any(|x| x["host"] == "pinned.test" && x["count"] == 3)
            })
    });
    assert!(found, "{}", admin_json(&w.gw, "/api/pinning"));
}

#[test]
fn token_is_generated_0600_and_guards_everything_but_the_public_routes() {
    let w = World::new(&["origin.test"], "");
    let path = w.gw.data_dir().join("admin.token");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(token(&w.gw).len(), 64);
    for p in ["/live", "/ready", "/ca.pem", "/ca.der", "/proxy.pac"] {
        assert_eq!(admin(&w.gw, p, &[]).http_code, 200, "{p}");
    }
    for p in [
        "/",
        "/metrics",
        "/api/config",
        "/api/policy",
        "/nope",
        "/api/openapi.json",
    ] {
        assert_eq!(admin(&w.gw, p, &[]).http_code, 401, "{p}");
        assert_eq!(admin(&w.gw, p, &["-I"]).http_code, 401, "HEAD {p}");
        assert_eq!(
            admin(&w.gw, p, &["-X", "OPTIONS"]).http_code,
            401,
            "OPTIONS {p}"
        );
        let wrong = admin(&w.gw, p, &["-H", "Authorization: Bearer 0000"]);
        assert_eq!(wrong.http_code, 401, "wrong token {p}");
    }
    let auth = format!("Authorization: Bearer {}", token(&w.gw));
    assert_eq!(admin(&w.gw, "/api/config", &["-H", &auth]).http_code, 200);
    // DNS rebinding and cross-site requests.
    let r = admin(&w.gw, "/", &["-H", "Host: evil.test", "-H", &auth]);
    assert_eq!(r.http_code, 421);
    let r = admin(
        &w.gw,
        "/api/pinning/reject",
        &[
            "-H",
            "Origin: http://evil.test",
            "-H",
            "Content-Type: text/plain",
            "--data",
            "{}",
        ],
    );
    assert_eq!(r.http_code, 403);
    assert!(r.header("access-control-allow-origin").is_none());
    // The CA download is the gateway's CA.
    let pem = admin(&w.gw, "/ca.pem", &[]).body_str();
    assert_eq!(pem, std::fs::read_to_string(w.gw.ca_pem_path()).unwrap());
    // The same token after a restart.
    let before = token(&w.gw);
    let mut gw = w.gw;
    gw.restart();
    assert_eq!(token(&gw), before);
}

#[test]
fn configured_token_file_replaces_the_generated_one() {
    let secret = "configured-admin-token-0123456789";
    let cfg = GatewayConfig::new()
        .file("secret.token", format!("{secret}\n"))
        .set("admin.token_file", "secret.token");
    let gw = TestGateway::start(BIN, cfg);
    assert!(!gw.data_dir().join("admin.token").exists());
    let ok = admin(
        &gw,
        "/api/apps",
        &["-H", &format!("Authorization: Bearer {secret}")],
    );
    assert_eq!(ok.http_code, 200);
    let apps: Value = serde_json::from_slice(&ok.body).unwrap();
    assert!(apps
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == "zoom-meetings"));
}

#[test]
fn non_loopback_admin_without_token_file_refuses_to_start() {
    let cfg = GatewayConfig::new().set("admin.listen", "0.0.0.0:0");
    let mut gw = TestGateway::prepare(BIN, cfg);
    let err = gw.try_launch().expect_err("must refuse to start");
    let status = err.status.expect("exited");
    assert!(!status.success());
    assert!(err.stderr.contains("admin.token_file"), "{}", err.stderr);
}

#[test]
fn check_api_answers_like_the_cli() {
    let w = World::new(
        &["origin.test"],
        "[[policy]]\nname = \"default\"\nbypass = { domains = [\"*.bank.example\"] }\n",
    );
    for host in ["zoom.us", "www.bank.example", "example.com"] {
        let api = admin_json(&w.gw, &format!("/api/check?host={host}"));
        let out = w.gw.run_cli(&["check", host, "--json"]);
        assert!(out.status.success());
        let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(api, cli, "{host}");
    }
}

#[test]
fn metrics_and_decisions_reflect_traffic() {
    let w = World::new(&["origin.test"], "");
    let ca = w.gw.ca_pem_path().to_str().unwrap().to_owned();
    let url = w.url("origin.test", "/");
    for _ in 0..2 {
        let r = curl_response(&["--proxy", &w.gw.proxy_url(), "--cacert", &ca, &url]);
        assert_eq!(r.http_code, 200, "{}", r.output.stderr);
    }
    w.gw.wait_for_logs(|r| r["kind"] == "connect", 2, LOG_WAIT);
    let auth = format!("Authorization: Bearer {}", token(&w.gw));
    let ok = eventually(Duration::from_secs(5), || {
        let text = admin(&w.gw, "/metrics", &["-H", &auth]).body_str();
        text.contains("sluice_connections_total{decision=\"decrypt\",reason=\"default\"} 2")
    });
    let text = admin(&w.gw, "/metrics", &["-H", &auth]).body_str();
    assert!(ok, "{text}");
    for name in [
        "sluice_requests_total",
        "sluice_leaf_cache_entries 1",
        "sluice_leaves_minted_total 1",
        "sluice_upstream_connect_seconds_bucket",
        "sluice_pinning_suspects 0",
        "sluice_connections_accepted_total 2",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .all(|l| l.starts_with("sluice_")));
    let d = admin_json(
        &w.gw,
        "/api/decisions?decision=decrypt&kind=connect&host=origin",
    );
    assert_eq!(d["count"], 2, "{d}");
    assert_eq!(d["records"][0]["sni"], "origin.test");
}

#[test]
fn approve_through_the_api_makes_the_next_pinned_curl_succeed() {
    let w = World::new(&["pinned.test"], "");
    let bundle = bundle(&w);
    produce_suspect(&w, &bundle);
    assert_eq!(
        pinned_curl(&w, &bundle).output.code,
        90,
        "report mode never bypasses"
    );
    let r = admin_post(
        &w.gw,
        "/api/pinning/approve",
        r#"{"host":"pinned.test","scope":"fingerprint","note":"vendor app pins"}"#,
    );
    assert_eq!(r.http_code, 200, "{}", r.body_str());
    let approval: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(approval["actor"], "admin-api");
    assert!(approval["evidence"]["observations"].as_u64().unwrap() >= 3);
    let ok = eventually(Duration::from_secs(10), || {
        pinned_curl(&w, &bundle).http_code == 200
    });
    assert!(
        ok,
        "the approval must apply to the running gateway within seconds"
    );
    w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["reason"] == "approved",
        LOG_WAIT,
    );
    // The CLI sees it, and the audit trail has it, with the request id.
    let out = w.gw.run_cli(&["pinning", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["approved"][0]["note"], "vendor app pins");
    let audit = std::fs::read_to_string(w.gw.data_dir().join("admin-audit.jsonl")).unwrap();
    let line: Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(line["action"], "pinning.approve");
    assert_eq!(line["request_id"].as_str(), r.header("x-request-id"));
    assert!(!audit.contains(&token(&w.gw)));
}

#[test]
fn admin_is_not_reachable_through_the_proxy() {
    let w = World::new(&["origin.test"], "");
    let admin_url = format!("{}/api/config", w.gw.admin_url());
    let auth = format!("Authorization: Bearer {}", token(&w.gw));
    let r = curl_response(&["--proxy", &w.gw.proxy_url(), "-H", &auth, &admin_url]);
    assert_eq!(r.http_code, 403, "{}", r.body_str());
    let pac = admin(&w.gw, "/proxy.pac", &[]).body_str();
    assert!(
        pac.contains(&format!("PROXY {}", w.gw.proxy_addr())),
        "{pac}"
    );
}

/// `sluice_leaves_minted_total` from /metrics.
fn leaves_minted(gw: &TestGateway) -> u64 {
    let auth = format!("Authorization: Bearer {}", token(gw));
    admin(gw, "/metrics", &["-H", &auth])
        .body_str()
        .lines()
        .find_map(|l| l.strip_prefix("sluice_leaves_minted_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("sluice_leaves_minted_total in /metrics")
}

#[test]
fn ca_rotation_takes_effect_at_once_and_destroys_the_old_key_ck05() {
    let w = World::new(&["ok.test", "h7.wild.test"], "");
    let old_ca = w.gw.dir().join("old-ca.pem");
    std::fs::copy(w.gw.ca_pem_path(), &old_ca).unwrap();
    let key = w.gw.data_dir().join("ca/sluice-ca.key");
    let old_key = std::fs::read(&key).unwrap();
    let via = |ca: &std::path::Path| {
        curl_response(&[
            "--proxy",
            &w.gw.proxy_url(),
            "--cacert",
            ca.to_str().unwrap(),
            &w.url("ok.test", "/"),
        ])
    };
    let before = via(&old_ca);
    assert_eq!(before.http_code, 200);
    let old_issuer = before.issuer_cn().unwrap();

    let r = admin_post(&w.gw, "/api/ca/rotate", "");
    assert_eq!(r.http_code, 200, "{}", r.body_str());
    let body: Value = serde_json::from_str(&r.body_str()).unwrap();
    assert_ne!(body["fingerprint"], body["previous"]);

    // Every new handshake presents a leaf from the new CA, even for a name cached before.
    let new_ca = w.gw.dir().join("new-ca.pem");
    std::fs::write(&new_ca, admin(&w.gw, "/ca.pem", &[]).body_str()).unwrap();
    let after = via(&new_ca);
    assert_eq!(after.http_code, 200, "{}", after.output.stderr);
    assert_ne!(after.issuer_cn().unwrap(), old_issuer);
    assert_ne!(via(&old_ca).http_code, 200, "the old CA no longer verifies");
    assert_ne!(std::fs::read(&key).unwrap(), old_key, "old key destroyed");
    let audit = std::fs::read_to_string(w.gw.data_dir().join("admin-audit.jsonl")).unwrap();
    let event: Value = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["action"] == "ca.rotate")
        .expect("ca.rotate audited");
    assert_eq!(event["ca_after"], body["fingerprint"]);
    assert!(!audit.contains("PRIVATE KEY"));

    // 200 parallel first requests for one new name mint one leaf.
    let minted = leaves_minted(&w.gw);
    let url = w.url("h7.wild.test", "/");
    let children: Vec<_> = (0..200)
        .map(|_| {
            std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .args(["--proxy", &w.gw.proxy_url(), "--cacert"])
                .arg(&new_ca)
                .arg(&url)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("curl")
        })
        .collect();
    let ok = children
        .into_iter()
        .filter_map(|c| c.wait_with_output().ok())
        .filter(|o| o.stdout == b"200")
        .count();
    assert_eq!(ok, 200);
    assert_eq!(leaves_minted(&w.gw), minted + 1);
}

#[test]
fn off_loopback_the_admin_api_is_https_only_ad01() {
    // Off loopback an administrator-chosen token is required (no generated default).
    let secret = "an-admin-token-of-some-length";
    let cfg = GatewayConfig::new()
        .set("admin.listen", "0.0.0.0:0")
        .set("admin.token_file", "admin-token")
        .file("admin-token", secret);
    let gw = TestGateway::start(BIN, cfg);
    let port = gw.admin_addr().port();
    let auth = format!("Authorization: Bearer {secret}");
    let ca = gw.ca_pem_path().to_str().unwrap().to_owned();
    // Plain HTTP: the public routes only, never the API (the token would travel in clear).
    let plain = curl_response(&["-H", &auth, &format!("http://127.0.0.1:{port}/api/config")]);
    assert_eq!(plain.http_code, 403);
    assert!(plain.body_str().contains("https"), "{}", plain.body_str());
    let pem = curl_response(&[&format!("http://127.0.0.1:{port}/ca.pem")]);
    assert_eq!(pem.http_code, 200);
    assert!(pem.body_str().contains("BEGIN CERTIFICATE"));
    // HTTPS with a certificate from the sluice CA, by address or by name.
    for url in [
        format!("https://127.0.0.1:{port}/api/config"),
        format!("https://localhost:{port}/api/config"),
    ] {
        let r = curl_response(&[
            "--cacert",
            &ca,
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "-H",
            &auth,
            &url,
        ]);
        assert_eq!(r.http_code, 200, "{url}: {}", r.output.stderr);
    }
    let r = curl_response(&[
        "--cacert",
        &ca,
        &format!("https://127.0.0.1:{port}/api/config"),
    ]);
    assert_eq!(r.http_code, 401, "still needs the token over TLS");
}
