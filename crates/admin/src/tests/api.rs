//! The JSON API, the PAC file and /metrics.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use serde_json::Value;

use super::{record, req, Fixture};

#[tokio::test]
async fn check_returns_the_cli_json_shape() {
    let f = Fixture::new();
    let r = f.get("/api/check?host=zoom.us&client=10.1.2.3").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let cli: BTreeSet<&str> = [
        "decision",
        "reason",
        "policy",
        "app",
        "category",
        "rule",
        "sni_mismatch",
        "trace",
    ]
    .into();
    assert_eq!(keys, cli);
    assert_eq!(v["decision"], "bypass");
    assert_eq!(v["reason"], "global");
    assert_eq!(v["app"], "zoom-meetings");
    assert!(v["rule"]
        .as_str()
        .unwrap()
        .contains("catalog.global_bypass"));
    let trace = v["trace"].as_array().unwrap();
    assert!(!trace.is_empty());
    assert!(trace
        .iter()
        .all(|s| s["step"].is_string() && s["matched"].is_boolean()));

    let v = f
        .get("/api/check?host=example.com&sni=zoom.us")
        .await
        .json();
    assert_eq!(v["decision"], "decrypt");
    assert_eq!(v["sni_mismatch"], true);
    for bad in [
        "/api/check",
        "/api/check?host=",
        "/api/check?host=a..b",
        "/api/check?host=zoom.us&client=nope",
        "/api/check?host=zoom.us&sni=a..b",
    ] {
        let r = f.get(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert!(r.json()["error"].is_string());
    }
}

#[tokio::test]
async fn decisions_are_filtered_newest_first() {
    let f = Fixture::new();
    let mut blocked = record("connect", "ads.example", "block", "blocked:domain");
    blocked.user = Some("alice".into());
    f.emit(vec![
        record("connect", "zoom.us", "bypass", "global"),
        record("connect", "www.example.com", "decrypt", "default"),
        blocked,
        record("request", "www.example.com", "decrypt", "default"),
    ]);
    let v = f.get("/api/decisions").await.json();
    assert_eq!(v["count"], 4);
    assert_eq!(v["records"][0]["kind"], "request", "newest first");
    let v = f.get("/api/decisions?decision=block").await.json();
    assert_eq!(v["count"], 1);
    assert_eq!(v["records"][0]["host"], "ads.example");
    let v = f.get("/api/decisions?user=alice").await.json();
    assert_eq!(v["count"], 1);
    let v = f
        .get("/api/decisions?host=EXAMPLE&kind=connect")
        .await
        .json();
    assert_eq!(v["count"], 2);
    let v = f.get("/api/decisions?limit=1").await.json();
    assert_eq!(v["count"], 1);
    for bad in ["limit=0", "limit=2001", "limit=x", "kind=other"] {
        let r = f.get(&format!("/api/decisions?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn apps_list_the_catalog() {
    let f = Fixture::new();
    let v = f.get("/api/apps").await.json();
    let apps = v.as_array().unwrap();
    assert_eq!(apps.len(), f.state.catalog.apps().len());
    let zoom = apps.iter().find(|a| a["id"] == "zoom-meetings").unwrap();
    assert_eq!(zoom["global_bypass"], true);
    assert!(!zoom["domains"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn pinning_approve_and_reject_act_on_the_store_and_are_audited() {
    let f = Fixture::new();
    f.make_suspect("pinned.test");
    let v = f.get("/api/pinning").await.json();
    assert_eq!(v["suspects"][0]["host"], "pinned.test");
    assert_eq!(v["suspects"][0]["status"], "suspect");
    for key in ["learned", "approved", "rejected"] {
        assert!(v[key].is_array(), "{key}");
    }
    let r = f
        .send(
            req(Method::POST, "/api/pinning/approve")
                .bearer()
                .json(r#"{"host":"Pinned.Test.","scope":"fingerprint","note":"vendor pins"}"#)
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let a = r.json();
    assert_eq!(a["host"], "pinned.test");
    assert_eq!(a["ja4"], "t13d0000h2_000000000000_000000000000");
    assert_eq!(a["evidence"]["observations"], 3);
    assert_eq!(a["actor"], "admin-api");
    let request_id = r.header("x-request-id").unwrap().to_owned();
    assert_eq!(f.store().approvals().unwrap().len(), 1);
    let audit = f.audit_lines();
    let line = audit
        .iter()
        .find(|l| l["action"] == "pinning.approve")
        .unwrap();
    assert_eq!(line["request_id"], request_id.as_str());
    assert_eq!(line["host"], "pinned.test");
    assert_eq!(line["actor"], "admin-api");
    assert!(line["version_after"].as_i64() > line["version_before"].as_i64());
    // The policy in force when it was decided (a pinning decision does not change it).
    assert_eq!(line["policy_before"].as_str().map(str::len), Some(64));
    assert_eq!(line["policy_before"], line["policy_after"]);

    let bad = f
        .send(
            req(Method::POST, "/api/pinning/approve")
                .bearer()
                .json(r#"{"host":"x.test","scope":"all"}"#)
                .build(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = f
        .send(
            req(Method::POST, "/api/pinning/approve")
                .bearer()
                .json(r#"{"host":"never.seen"}"#)
                .build(),
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::BAD_REQUEST,
        "no fingerprint observed"
    );

    let r = f
        .send(
            req(Method::POST, "/api/pinning/reject")
                .bearer()
                .json(r#"{"host":"pinned.test","note":"no"}"#)
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(f.store().approvals().unwrap().is_empty());
    assert_eq!(f.store().rejections().unwrap()[0].note, "no");
    assert!(f
        .audit_lines()
        .iter()
        .any(|l| l["action"] == "pinning.reject"));
}

#[tokio::test]
async fn config_summary_has_policies_and_no_secrets() {
    let f = Fixture::with_config(
        "[admin]\npac_direct = [\"*.corp.example\"]\n\
         [[policy]]\nname = \"default\"\nbypass = { domains = [\"*.bank.example\", \"pay.example\"], apps = [\"dropbox\"] }\n\
         block = { apps = [\"tiktok\"] }\n",
    );
    let r = f.get("/api/config").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let p = &v["policies"][0];
    assert_eq!(p["name"], "default");
    assert_eq!(p["bypass"]["domains"], 2);
    assert_eq!(p["bypass"]["apps"], 1);
    assert_eq!(p["block"]["apps"], 1);
    assert_eq!(v["pinning"]["mode"], "report");
    assert_eq!(v["pinning"]["threshold"], 3);
    assert_eq!(v["proxy"]["bound"][0], "127.0.0.1:3128");
    assert_eq!(v["admin"]["pac_direct"][0], "*.corp.example");
    assert!(v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["value"] == "*.bank.example"));
    assert!(!r.body.contains(super::TOKEN));
    assert!(!r.body.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn pac_sends_web_traffic_to_the_proxy_and_local_names_direct() {
    let f =
        Fixture::with_config("[admin]\npac_direct = [\"*.corp.example\", \"intranet.example\"]\n");
    let r = f.send(req(Method::GET, "/proxy.pac").build()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some(crate::pac::CONTENT_TYPE));
    let pac = r.body;
    assert!(pac.contains("function FindProxyForURL(url, host)"));
    assert!(pac.contains("return \"PROXY 127.0.0.1:3128\";"), "{pac}");
    assert!(pac.contains("isPlainHostName(host)"));
    assert!(pac.contains("dnsDomainIs(host, \".corp.example\")"));
    assert!(pac.contains("host == \"intranet.example\""));
    assert!(pac.contains("isInNet(host, \"10.0.0.0\", \"255.0.0.0\")"));
    assert!(!pac.contains("dnsResolve"), "no DNS lookups from the PAC");
}

#[tokio::test]
async fn metrics_expose_sluice_series_and_scrape_time_values() {
    let f = Fixture::new();
    f.make_suspect("pinned.test");
    f.emit(vec![record("connect", "zoom.us", "bypass", "global")]);
    // A decision on the data path counts a rule hit (explanations such as /api/check do not).
    let host = sluice_policy::name::Host::parse("zoom.us").unwrap();
    let q = sluice_policy::engine::Query {
        client: "127.0.0.1".parse().unwrap(),
        user: None,
        host: Some(&host),
        sni: None,
        ja4: None,
        now: 0,
        explain: false,
    };
    let _ = f.get("/api/check?host=zoom.us").await;
    f.state
        .rt
        .snapshot
        .load()
        .engine
        .decide(&q, &sluice_policy::exceptions::Exceptions::empty());
    let r = f.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.body;
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(text.matches("# EOF").count(), 1);
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("sluice_"), "{line}");
    }
    assert!(
        text.contains("sluice_connections_total{decision=\"bypass\",reason=\"global\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sluice_rule_hits_total{policy=\"catalog\",list=\"catalog.global_bypass\""),
        "{text}"
    );
    assert!(text.contains("sluice_pinning_suspects 1"), "{text}");
    assert!(
        text.contains("sluice_pinning_exceptions{kind=\"approved\"} 0"),
        "{text}"
    );
    assert!(text.contains("sluice_leaf_cache_entries"));
    assert!(text.contains("sluice_admin_auth_failures_total 0"));
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let f = Fixture::new();
    let r = f.get("/api/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let v: Value = r.json();
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    let paths = v["paths"].as_object().unwrap();
    for p in [
        "/api/decisions",
        "/api/check",
        "/api/apps",
        "/api/pinning",
        "/api/pinning/approve",
        "/api/pinning/reject",
        "/api/config",
        "/api/openapi.json",
        "/metrics",
        "/live",
        "/ready",
        "/proxy.pac",
        "/ca.pem",
        "/ca.der",
    ] {
        assert!(paths.contains_key(p), "{p} missing from openapi.json");
    }
}
