//! `GET`/`PUT`/`DELETE /api/policy` (security matrix AD-04, AD-05): strict validation with the
//! config file's rules, nothing applied on error, persisted atomically, audited before the 2xx.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_policy::config::POLICY_FILE;

use super::{login, req, Fixture, Reply, TOKEN};

const CONFIG: &str = "[[policy]]\nname = \"default\"\nblock = { domains = [\"old.example\"] }\n";

fn blocking(domain: &str) -> String {
    json!({"policies": [{"name": "default", "block": {"domains": [domain]}}]}).to_string()
}

impl Fixture {
    async fn put(&self, body: impl Into<axum::body::Body>) -> Reply {
        self.send(req(Method::PUT, "/api/policy").bearer().body(body).build())
            .await
    }

    async fn policy(&self) -> Value {
        let r = self.get("/api/policy").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.json()
    }

    async fn decision(&self, host: &str) -> String {
        let v = self.get(&format!("/api/check?host={host}")).await.json();
        v["decision"].as_str().unwrap().to_owned()
    }

    fn policy_file(&self) -> std::path::PathBuf {
        self.dir.path().join(POLICY_FILE)
    }
}

#[tokio::test]
async fn get_shows_the_config_policies_their_source_and_hash() {
    let f = Fixture::with_config(CONFIG);
    let v = f.policy().await;
    assert_eq!(v["source"], "config");
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);
    let p = &v["policies"][0];
    assert_eq!(p["name"], "default");
    assert_eq!(p["block"]["domains"], json!(["old.example"]));
    for key in ["match", "decrypt", "global_bypass", "bypass", "block"] {
        assert!(!p[key].is_null(), "{key}");
    }
}

#[tokio::test]
async fn put_applies_persists_and_audits_before_answering() {
    let f = Fixture::with_config(CONFIG);
    let before = f.policy().await["hash"].as_str().unwrap().to_owned();
    assert_eq!(f.decision("new.example").await, "decrypt");
    // Any content type: `curl --data @policy.json` sends a form type.
    let r = f
        .send(
            req(Method::PUT, "/api/policy")
                .bearer()
                .form(&blocking("new.example"))
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    let after = v["hash"].as_str().unwrap().to_owned();
    assert_ne!(after, before);
    assert_eq!(v["previous_hash"], before.as_str());
    assert_eq!(v["source"], "api");
    assert_eq!(f.decision("new.example").await, "block");
    assert_eq!(f.decision("old.example").await, "decrypt");
    let got = f.policy().await;
    assert_eq!(
        (got["source"].as_str(), got["hash"].as_str()),
        (Some("api"), Some(after.as_str()))
    );
    // The file holds the canonical list, which parses back to the same hash.
    let stored: Value = serde_json::from_slice(&std::fs::read(f.policy_file()).unwrap()).unwrap();
    assert_eq!(stored["policies"], got["policies"]);
    let request_id = r.header("x-request-id").unwrap();
    let audit = f.audit_lines();
    let e = audit
        .iter()
        .find(|l| l["action"] == "policy.replace")
        .unwrap();
    assert_eq!(e["request_id"], request_id);
    assert_eq!(e["actor"], "admin-api");
    assert_eq!(e["policy_before"], before.as_str());
    assert_eq!(e["policy_after"], after.as_str());
    assert!(e["ts"].is_string());
    let text = std::fs::read_to_string(f.dir.path().join(crate::audit::AUDIT_FILE)).unwrap();
    assert!(!text.contains(TOKEN));
}

#[tokio::test]
async fn every_bad_body_is_refused_and_the_old_policy_stays() {
    let f = Fixture::with_config(CONFIG);
    let before = f.policy().await;
    let long = format!("{}.example", "a".repeat(300));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_inside = format!(
        r#"{{"policies": [{{"name": "default", "block": {{"domains": {}1{}}}}}]}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let cases: Vec<(String, &str)> = vec![
        ("{\"policies\": [".into(), "invalid JSON"),
        ("not json".into(), "invalid JSON"),
        ("[]".into(), "invalid JSON"),
        (r#"{"policies": [], "extra": 1}"#.into(), "extra"),
        (r#"{"policies": [{"name": "default", "blokc": {}}]}"#.into(), "blokc"),
        (r#"{"policies": [{"name": "default", "block": {"domainz": []}}]}"#.into(), "domainz"),
        (blocking("a..example"), "policies[0].block.domains[0]"),
        (blocking("*"), "policies[0].block.domains[0]"),
        (blocking(""), "policies[0].block.domains[0]"),
        (blocking("*.co.uk"), "policies[0].block.domains[0]"),
        (blocking(&long), "policies[0].block.domains[0]"),
        (r#"{"policies": [{"name": "default", "bypass": {"domains": ["ok.example", "x", "*.com"]}}]}"#.into(), "policies[0].bypass.domains[2]"),
        (r#"{"policies": [{"name": null}]}"#.into(), "policies[0].name"),
        (r#"{"policies": {"name": "default"}}"#.into(), "policies"),
        (deep, "invalid JSON"),
        (deep_inside, "invalid JSON"),
    ];
    for (body, expect) in cases {
        let r = f.put(body.clone()).await;
        let shown: String = body.chars().take(80).collect();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{shown}: {}", r.body);
        let error = r.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(expect), "{shown}: {error}");
    }
    // No Content-Length here (oneshot): the limit holds while reading.
    let r = f.put(vec![b' '; 10 << 20]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    // A declared length over the limit is refused before reading.
    let declared = req(Method::PUT, "/api/policy")
        .bearer()
        .header("content-length", &(10u32 << 20).to_string())
        .body(blocking("x.example"))
        .build();
    let r = f.send(declared).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(f.policy().await, before, "nothing was applied");
    assert_eq!(f.decision("old.example").await, "block");
    assert!(!f.policy_file().exists());
    assert!(f
        .audit_lines()
        .iter()
        .all(|l| l["action"] != "policy.replace"));
}

#[tokio::test]
async fn if_match_guards_against_lost_updates_and_delete_restores_the_file_policy() {
    let f = Fixture::with_config(CONFIG);
    let original = f.policy().await["hash"].as_str().unwrap().to_owned();
    let body = json!({"policies": [{"name": "default"}], "if_match": "0".repeat(64)});
    let r = f.put(body.to_string()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let body = json!({"policies": [{"name": "default"}], "if_match": original});
    let r = f.put(body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(f.decision("old.example").await, "decrypt");
    assert!(f.policy_file().exists());
    let r = f
        .send(req(Method::DELETE, "/api/policy").bearer().build())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["source"], "config");
    assert_eq!(r.json()["hash"], original.as_str());
    assert!(!f.policy_file().exists());
    assert_eq!(f.decision("old.example").await, "block");
    let e = f.audit_lines();
    let e = e.iter().find(|l| l["action"] == "policy.delete").unwrap();
    assert_eq!(e["policy_after"], original.as_str());
}

#[tokio::test]
async fn unauthenticated_and_csrf_less_updates_are_refused_and_audited() {
    let f = Fixture::with_config(CONFIG);
    let r = f
        .send(
            req(Method::PUT, "/api/policy")
                .json(&blocking("x.example"))
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f
        .send(
            req(Method::DELETE, "/api/policy")
                .header("authorization", "Bearer wrong")
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Written from a blocking task after the 401: wait for it, bounded.
    let mut lines = Vec::new();
    for _ in 0..250 {
        lines = f.audit_lines();
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let reasons: Vec<&str> = lines.iter().filter_map(|l| l["reason"].as_str()).collect();
    assert!(reasons.contains(&"no credentials"), "{lines:?}");
    assert!(reasons.contains(&"wrong bearer token"), "{lines:?}");
    assert!(lines
        .iter()
        .all(|l| l["action"] == "auth.failed" && l["path"] == "/api/policy"));
    let (cookie, csrf) = login(&f).await;
    let r = f
        .send(
            req(Method::PUT, "/api/policy")
                .header("cookie", &cookie)
                .json(&blocking("x.example"))
                .build(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a session needs its CSRF token"
    );
    assert_eq!(f.decision("x.example").await, "decrypt");
    let r = f
        .send(
            req(Method::PUT, "/api/policy")
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf)
                .json(&blocking("x.example"))
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let audit = f.audit_lines();
    let e = audit
        .iter()
        .find(|l| l["action"] == "policy.replace")
        .unwrap();
    assert_eq!(e["actor"], "admin-ui");
    let text = std::fs::read_to_string(f.dir.path().join(crate::audit::AUDIT_FILE)).unwrap();
    assert!(!text.contains(&csrf) && !text.contains(cookie.split('=').nth(1).unwrap()));
}
