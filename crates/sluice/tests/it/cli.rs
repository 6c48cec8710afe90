//! The administrator's CLI verbs against the same config and data dir as the gateway.

use std::process::Command;

use serde_json::Value;
use sluice_test_support::{GatewayConfig, TestGateway};

use crate::BIN;

#[test]
fn config_check_reports_every_error_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[proxy]\nlisten = [\"nope\"]\n\n[[policy]]\nname = \"default\"\nbypass = { domains = [\"*.co.uk\"] }\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2: proxy.listen[0]"), "{err}");
    assert!(err.contains("line 6: policy[0].bypass.domains[0]"), "{err}");
    std::fs::write(&file, "[proxy]\nbogus = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    std::fs::write(
        &file,
        "[[policy]]\nname = \"default\"\nbypass = { apps = [\"dropbox\"] }\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_explains_the_decision() {
    let cfg = GatewayConfig::new()
        .extra_toml("[[policy]]\nname = \"default\"\nblock = { apps = [\"tiktok\"] }\n");
    let gw = TestGateway::prepare(BIN, cfg);
    let out = gw.run_cli(&["check", "zoom.us", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "bypass");
    assert_eq!(v["reason"], "global");
    assert_eq!(v["app"], "zoom-meetings");
    assert_eq!(v["policy"], "default");
    assert!(v["rule"].as_str().unwrap().contains("catalog"));
    let out = gw.run_cli(&["check", "www.tiktok.com", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "block");
    let out = gw.run_cli(&["check", "example.org"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("decrypt") && text.contains("trace:"),
        "{text}"
    );
}

#[test]
fn ca_export_prints_the_certificate_only() {
    let gw = TestGateway::prepare(BIN, GatewayConfig::new());
    let out = gw.run_cli(&["ca", "export"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8_lossy(&out.stdout);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!pem.contains("PRIVATE KEY"));
    let der = gw.run_cli(&["ca", "export", "--der"]);
    assert_eq!(der.stdout[0], 0x30, "DER starts with a SEQUENCE");
    let key = gw.data_dir().join("ca/sluice-ca.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn apps_list_json_covers_the_catalog() {
    let gw = TestGateway::prepare(BIN, GatewayConfig::new());
    let out = gw.run_cli(&["apps", "list", "--json"]);
    let apps: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(apps.len(), 57);
    assert_eq!(
        apps.iter().filter(|a| a["global_bypass"] == true).count(),
        13
    );
    for key in [
        "id",
        "name",
        "vendor",
        "category",
        "global_bypass",
        "domains",
        "sources",
    ] {
        assert!(apps[0].get(key).is_some(), "{key}");
    }
    let out = gw.run_cli(&["apps", "show", "zoom-meetings"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("*.zoom.us"));
    let out = gw.run_cli(&["apps", "show", "no-such-app"]);
    assert!(!out.status.success());
}

#[test]
fn what_if_replays_recorded_flows_against_a_new_config() {
    let w = crate::World::new(&["zoom.us", "origin.test"], "");
    let root = w.root().to_str().unwrap().to_owned();
    sluice_test_support::curl_response(&[
        "--proxy",
        &w.gw.proxy_url(),
        "--cacert",
        &root,
        &w.url("zoom.us", "/"),
    ]);
    sluice_test_support::curl_response_via(&w.gw, &w.url("origin.test", "/"), &[]);
    w.gw.wait_for_logs(|r| r["kind"] == "connect", 2, crate::LOG_WAIT);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, w.gw.stdout_lines().join("\n")).unwrap();
    let new = dir.path().join("new.toml");
    std::fs::write(&new, "[[policy]]\nname = \"default\"\nglobal_bypass = false\nbypass = { domains = [\"origin.test\"] }\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&new)
        .args(["what-if", "--json", "--log"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["compared"], 2, "{v}");
    let changed = v["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 2, "{v}");
    let zoom = changed.iter().find(|c| c["host"] == "zoom.us").unwrap();
    assert_eq!(
        (zoom["was"].as_str(), zoom["now"].as_str()),
        (Some("bypass"), Some("decrypt"))
    );
    let origin = changed.iter().find(|c| c["host"] == "origin.test").unwrap();
    assert_eq!(
        (origin["was"].as_str(), origin["now"].as_str()),
        (Some("decrypt"), Some("bypass"))
    );
}
