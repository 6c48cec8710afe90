//! The policy API end to end (security matrix AD-04, AD-05): the real binary, real curl
//! clients through the proxy and against the admin listener. Hostile bodies leave the old
//! policy deciding; a valid update is enforced at once, audited, survives a restart and a
//! `kill -9` in the middle of updates, and `DELETE` goes back to the config file's policy.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_test_support::{curl, curl_response, CurlResponse, TestGateway};

use crate::admin::{admin, admin_json, eventually, token};
use crate::World;

/// The config file's policy: `old.test` is blocked.
const CONFIG: &str = "[[policy]]\nname = \"default\"\nblock = { domains = [\"old.test\"] }\n";
const NAMES: &[&str] = &["origin.test", "old.test", "new.test"];

fn world() -> World {
    World::new(NAMES, CONFIG)
}

/// The proxy's answer to the CONNECT curl sends for `https://host:port/` (`403` blocked,
/// `200` tunnel opened).
fn connect_code(w: &World, host: &str) -> String {
    let ca = w.gw.ca_pem_path().to_string_lossy().into_owned();
    let out = curl(&[
        "--proxy",
        &w.gw.proxy_url(),
        "--cacert",
        &ca,
        "-o",
        "/dev/null",
        "-w",
        "%{http_connect}",
        &w.url(host, "/"),
    ]);
    out.stdout_str()
}

/// `PUT /api/policy` with the body from a file (as the matrix recipe does), bearer token.
fn put_file(gw: &TestGateway, body: &[u8]) -> CurlResponse {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let data = format!("@{}", file.path().display());
    let auth = format!("Authorization: Bearer {}", token(gw));
    admin(
        gw,
        "/api/policy",
        &["-X", "PUT", "-H", &auth, "--data-binary", &data],
    )
}

fn blocking(domains: &[&str]) -> Vec<u8> {
    json!({"policies": [{"name": "default", "block": {"domains": domains}}]})
        .to_string()
        .into_bytes()
}

fn audit_log(gw: &TestGateway) -> Vec<Value> {
    std::fs::read_to_string(gw.data_dir().join("admin-audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

#[test]
fn hostile_bodies_are_refused_and_the_old_policy_keeps_deciding() {
    let w = world();
    let before = admin_json(&w.gw, "/api/policy");
    assert_eq!(before["source"], "config");
    let long = format!("{}.test", "a".repeat(300));
    let mut deep = "[".repeat(10_000).into_bytes();
    deep.extend("]".repeat(10_000).bytes());
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("invalid JSON", b"{\"policies\": [".to_vec(), 400),
        (
            "unknown field",
            br#"{"policies": [{"name": "default", "blok": {}}]}"#.to_vec(),
            400,
        ),
        ("empty label", blocking(&["a..test"]), 400),
        ("bare *", blocking(&["*"]), 400),
        ("300-char name", blocking(&[&long]), 400),
        ("public suffix", blocking(&["*.co.uk"]), 400),
        ("10,000-deep nesting", deep, 400),
        ("10 MiB body", vec![b' '; 10 << 20], 413),
    ];
    for (what, body, status) in cases {
        let r = put_file(&w.gw, &body);
        assert_eq!(r.http_code, status, "{what}: {}", r.body_str());
        let err: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        assert!(err["error"].is_string(), "{what}: {}", r.body_str());
        let now = admin_json(&w.gw, "/api/policy");
        assert_eq!(now["hash"], before["hash"], "{what} changed the policy");
    }
    let r = put_file(&w.gw, &blocking(&["ok.test", "*"]));
    assert!(
        r.body_str().contains("policies[0].block.domains[1]"),
        "{}",
        r.body_str()
    );
    // The old policy still decides what goes through the proxy.
    assert_eq!(connect_code(&w, "old.test"), "403");
    assert_eq!(connect_code(&w, "new.test"), "200");
    assert!(!w.gw.data_dir().join("policy.json").exists());
    assert_eq!(
        admin(&w.gw, "/live", &[]).http_code,
        200,
        "it survived every body"
    );
}

#[test]
fn an_update_is_enforced_audited_survives_restart_and_delete_restores_the_file_policy() {
    let mut w = world();
    let before = admin_json(&w.gw, "/api/policy")["hash"].clone();
    let r = put_file(&w.gw, &blocking(&["new.test"]));
    assert_eq!(r.http_code, 200, "{}", r.body_str());
    let reply: Value = serde_json::from_slice(&r.body).unwrap();
    let after = reply["hash"].clone();
    assert_ne!(after, before);
    // Enforced on the next connection.
    assert_eq!(connect_code(&w, "new.test"), "403");
    assert_eq!(connect_code(&w, "old.test"), "200");
    let now = admin_json(&w.gw, "/api/policy");
    assert_eq!((&now["source"], &now["hash"]), (&json!("api"), &after));
    // Audited before the 200, with both hashes and without the token.
    let event = audit_log(&w.gw)
        .into_iter()
        .find(|e| e["action"] == "policy.replace")
        .expect("an audit event for the update");
    assert_eq!(event["policy_before"], before);
    assert_eq!(event["policy_after"], after);
    assert_eq!(event["actor"], "admin-api");
    assert_eq!(event["request_id"].as_str(), r.header("x-request-id"));
    let text = std::fs::read_to_string(w.gw.data_dir().join("admin-audit.jsonl")).unwrap();
    assert!(!text.contains(&token(&w.gw)));
    // The CLI sees what the gateway sees.
    let out = w.gw.run_cli(&["check", "new.test", "--json"]);
    let check: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check["decision"], "block", "{check}");
    // A restart keeps the API's policy.
    w.gw.restart();
    let now = admin_json(&w.gw, "/api/policy");
    assert_eq!((&now["source"], &now["hash"]), (&json!("api"), &after));
    assert_eq!(connect_code(&w, "new.test"), "403");
    // DELETE: back to the config file's [[policy]].
    let auth = format!("Authorization: Bearer {}", token(&w.gw));
    let r = admin(&w.gw, "/api/policy", &["-X", "DELETE", "-H", &auth]);
    assert_eq!(r.http_code, 200, "{}", r.body_str());
    let now = admin_json(&w.gw, "/api/policy");
    assert_eq!((&now["source"], &now["hash"]), (&json!("config"), &before));
    assert_eq!(connect_code(&w, "old.test"), "403");
    assert_eq!(connect_code(&w, "new.test"), "200");
    assert!(audit_log(&w.gw)
        .iter()
        .any(|e| e["action"] == "policy.delete"));
}

#[test]
fn a_corrupt_policy_file_stops_the_start_and_a_sighup_keeps_the_running_policy() {
    let mut w = world();
    let r = put_file(&w.gw, &blocking(&["new.test"]));
    assert_eq!(r.http_code, 200, "{}", r.body_str());
    let hash = admin_json(&w.gw, "/api/policy")["hash"].clone();
    let file = w.gw.data_dir().join("policy.json");
    std::fs::write(
        &file,
        "{\"policies\": [{\"name\": \"default\", \"block\": {\"domains\": [\"*\"]}}]}",
    )
    .unwrap();
    w.gw.sighup();
    assert!(
        eventually(Duration::from_secs(10), || w
            .gw
            .stderr()
            .iter()
            .any(|l| l.starts_with("sluice reload failed"))),
        "{:?}",
        w.gw.stderr()
    );
    let stderr = w.gw.stderr().join("\n");
    assert!(
        stderr.contains("policy.json: policies[0].block.domains[0]"),
        "{stderr}"
    );
    assert_eq!(admin_json(&w.gw, "/api/policy")["hash"], hash);
    assert_eq!(connect_code(&w, "new.test"), "403");
    w.gw.terminate();
    std::fs::write(&file, "{\"policies\": [").unwrap();
    let err =
        w.gw.try_launch()
            .expect_err("a corrupt policy.json must stop the start");
    assert!(err.stderr.contains("policy.json"), "{}", err.stderr);
    assert_eq!(
        err.status.and_then(|s| s.code()),
        Some(64),
        "{}",
        err.stderr
    );
}

#[test]
fn kill_9_during_updates_leaves_the_old_or_the_new_policy_never_a_partial_one() {
    let mut w = world();
    // Big enough documents that a write takes a while.
    let many = |prefix: &str| -> Vec<String> {
        (0..3000).map(|i| format!("{prefix}{i}.example")).collect()
    };
    let (a, b) = (many("a"), many("b"));
    let a_body = blocking(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let b_body = blocking(&b.iter().map(String::as_str).collect::<Vec<_>>());
    let hash_of = |r: CurlResponse| {
        assert_eq!(r.http_code, 200, "{}", r.body_str());
        serde_json::from_slice::<Value>(&r.body).unwrap()["hash"].clone()
    };
    let hash_a = hash_of(put_file(&w.gw, &a_body));
    let hash_b = hash_of(put_file(&w.gw, &b_body));
    let (a_body, b_body) = (Arc::new(a_body), Arc::new(b_body));
    for round in 0..4 {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let url = format!("{}/api/policy", w.gw.admin_url());
        let auth = format!("Authorization: Bearer {}", token(&w.gw));
        let writer = {
            let (stop, done, a, b) = (stop.clone(), done.clone(), a_body.clone(), b_body.clone());
            std::thread::spawn(move || {
                let file = tempfile::NamedTempFile::new().unwrap();
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    std::fs::write(file.path(), if i % 2 == 0 { &*a } else { &*b }).unwrap();
                    let data = format!("@{}", file.path().display());
                    let r =
                        curl_response(&["-X", "PUT", "-H", &auth, "--data-binary", &data, &url]);
                    if r.http_code == 200 {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    i += 1;
                }
            })
        };
        // Kill once updates are flowing (progress, not time, decides when).
        let deadline = Instant::now() + Duration::from_secs(30);
        while done.load(Ordering::SeqCst) < 1 + round % 3 {
            assert!(Instant::now() < deadline, "no update succeeded");
            std::thread::yield_now();
        }
        w.gw.kill9();
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        let text = std::fs::read_to_string(w.gw.data_dir().join("policy.json")).unwrap();
        let doc: Value = serde_json::from_str(&text).expect("policy.json always parses");
        let first = doc["policies"][0]["block"]["domains"][0]
            .as_str()
            .unwrap()
            .to_owned();
        let count = doc["policies"][0]["block"]["domains"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(count, 3000, "round {round}: a whole list");
        assert!(first == "a0.example" || first == "b0.example", "{first}");
        w.gw.launch();
        let hash = admin_json(&w.gw, "/api/policy")["hash"].clone();
        assert!(hash == hash_a || hash == hash_b, "round {round}: {hash}");
    }
}

#[test]
fn an_unauthenticated_update_is_refused_and_audited() {
    let w = world();
    let r = admin(
        &w.gw,
        "/api/policy",
        &[
            "-X",
            "PUT",
            "--data-binary",
            &String::from_utf8(blocking(&["new.test"])).unwrap(),
        ],
    );
    assert_eq!(r.http_code, 401, "{}", r.body_str());
    // The refusal's audit line is written right after the 401: wait for it, bounded.
    assert!(
        eventually(Duration::from_secs(10), || {
            audit_log(&w.gw)
                .iter()
                .any(|e| e["action"] == "auth.failed" && e["path"] == "/api/policy")
        }),
        "{:?}",
        audit_log(&w.gw)
    );
    assert_eq!(admin_json(&w.gw, "/api/policy")["source"], "config");
    assert_eq!(connect_code(&w, "new.test"), "200");
}
