//! Selective decryption end to end: global bypass from the catalog, bypass by application,
//! category list and user, application control (blocks), authentication, reload, and
//! `sluice policy test`.

use std::process::Command;
use std::time::Duration;

use sluice_test_support::pki::INTERMEDIATE_CN;
use sluice_test_support::{curl, curl_response, curl_response_via, LeafOpts};

use crate::{World, BIN, LOG_WAIT};

fn via_root(w: &World, host: &str, extra: &[&str]) -> sluice_test_support::CurlResponse {
    let root = w.root().to_str().unwrap().to_owned();
    let proxy = w.gw.proxy_url();
    let url = w.url(host, "/");
    let mut args = vec!["--proxy", proxy.as_str(), "--cacert", root.as_str()];
    args.extend_from_slice(extra);
    args.push(&url);
    curl_response(&args)
}

#[test]
fn catalog_global_bypass_keeps_the_origin_certificate() {
    let w = World::new(&["zoom.us", "origin.test"], "");
    let res = via_root(&w, "zoom.us", &[]);
    assert_eq!(res.http_code, 200, "{}", res.output.stderr);
    assert_eq!(res.issuer_cn().as_deref(), Some(INTERMEDIATE_CN));
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "zoom.us",
        LOG_WAIT,
    );
    assert_eq!(
        (rec["decision"].as_str(), rec["reason"].as_str()),
        (Some("bypass"), Some("global"))
    );
    assert_eq!(rec["app"], "zoom-meetings");
}

#[test]
fn bypass_by_application_and_by_category_list() {
    let w = World::with(
        &["www.dropbox.com", "bank.test", "origin.test"],
        LeafOpts::default(),
        |c| {
            c.file("categories/finance/domains", "# UT1 layout\nbank.test\n")
            .file("categories/adult/domains", "nothing.test\n")
            .extra_toml(
                "[catalog]\ncategory_lists = [\"categories\"]\n\
                 [[policy]]\nname = \"default\"\nbypass = { apps = [\"dropbox\"], categories = [\"finance\"] }\n",
            )
        },
    );
    for host in ["www.dropbox.com", "bank.test"] {
        let res = via_root(&w, host, &[]);
        assert_eq!(res.http_code, 200, "{host}: {}", res.output.stderr);
        assert_eq!(
            res.issuer_cn().as_deref(),
            Some(INTERMEDIATE_CN),
            "{host} must be bypassed"
        );
    }
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "bank.test",
        LOG_WAIT,
    );
    assert_eq!(rec["category"], "finance");
    assert!(
        rec["rule"].as_str().unwrap().contains("bypass.categories"),
        "{rec}"
    );
    let res = curl_response_via(&w.gw, &w.url("origin.test", "/"), &[]);
    assert_ne!(
        res.issuer_cn().as_deref(),
        Some(INTERMEDIATE_CN),
        "others stay decrypted"
    );
}

fn apr1(password: &str) -> String {
    let out = Command::new("openssl")
        .args(["passwd", "-apr1", password])
        .output()
        .expect("openssl");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn bypass_for_one_user_but_not_another() {
    let htpasswd = format!("alice:{}\nbob:{}\n", apr1("wonderland"), apr1("builder"));
    let w = World::with(&["bank.test"], LeafOpts::default(), |c| {
        c.file("users.htpasswd", htpasswd).extra_toml(
            "[auth]\nhtpasswd = \"users.htpasswd\"\n\
             [[policy]]\nname = \"finance\"\nmatch = { users = [\"alice\"] }\nbypass = { domains = [\"bank.test\"] }\n",
        )
    });
    let res = via_root(&w, "bank.test", &["--proxy-user", "alice:wonderland"]);
    assert_eq!(res.http_code, 200, "{}", res.output.stderr);
    assert_eq!(
        res.issuer_cn().as_deref(),
        Some(INTERMEDIATE_CN),
        "alice's policy bypasses"
    );
    let rec =
        w.gw.wait_for_log(|r| r["kind"] == "connect" && r["user"] == "alice", LOG_WAIT);
    assert_eq!(rec["policy"], "finance");

    let ca = w.gw.ca_pem_path().to_str().unwrap().to_owned();
    let url = w.url("bank.test", "/");
    let res = curl_response(&[
        "--proxy",
        &w.gw.proxy_url(),
        "--cacert",
        &ca,
        "--proxy-user",
        "bob:builder",
        &url,
    ]);
    assert_eq!(res.http_code, 200, "{}", res.output.stderr);
    assert_ne!(
        res.issuer_cn().as_deref(),
        Some(INTERMEDIATE_CN),
        "bob is decrypted"
    );
    let rec =
        w.gw.wait_for_log(|r| r["kind"] == "connect" && r["user"] == "bob", LOG_WAIT);
    assert_eq!(rec["decision"], "decrypt");

    // Missing or wrong credentials: 407 with a challenge; the password never reaches the log.
    let proxy = w.gw.proxy_url();
    for creds in [None, Some("bob:wrong-password")] {
        let mut args = vec![
            "--proxy",
            proxy.as_str(),
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-w",
            "%{http_connect}",
        ];
        if let Some(c) = creds {
            args.extend_from_slice(&["--proxy-user", c]);
        }
        args.push(url.as_str());
        let out = curl(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("407"), "{creds:?}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("proxy-authenticate: basic"),
            "{text}"
        );
    }
    w.gw.wait_for_log(|r| r["reason"] == "auth_failed", LOG_WAIT);
    assert!(w
        .gw
        .stdout_lines()
        .iter()
        .all(|l| !l.contains("wrong-password") && !l.contains("builder")));
}

#[test]
fn blocked_application_gets_a_block_page_and_no_origin_bytes() {
    let w = World::with(
        &["www.tiktok.com", "origin.test"],
        LeafOpts::default(),
        |c| c.extra_toml("[[policy]]\nname = \"default\"\nblock = { apps = [\"tiktok\"] }\n"),
    );
    // Plain HTTP: a 403 page naming the application and the policy.
    let plain = sluice_test_support::TestOrigin::builder()
        .name("www.tiktok.com")
        .start_blocking();
    let url = plain.url("www.tiktok.com", "/video");
    let out = curl(&["--proxy", &w.gw.proxy_url(), "-D", "-", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(
        text.contains("tiktok") && text.contains("default") && text.contains("Request id"),
        "{text}"
    );
    assert!(text.contains("blocked:app"));
    assert!(plain.requests().is_empty());
    // HTTPS by CONNECT host: refused before the tunnel opens.
    let res = curl_response_via(&w.gw, &w.url("www.tiktok.com", "/"), &[]);
    assert_eq!(res.http_code, 0);
    // HTTPS where only the SNI names the blocked app: closed after the ClientHello.
    let target = format!("origin.test:{}", w.origin.port());
    let out = sluice_test_support::openssl_s_client(
        w.gw.proxy_addr(),
        &target,
        &["-servername", "www.tiktok.com"],
        b"GET / HTTP/1.1\r\nHost: www.tiktok.com\r\n\r\n",
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hello from"));
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["sni"] == "www.tiktok.com",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "block");
    assert!(
        w.origin.requests().is_empty(),
        "no request may reach any origin"
    );
}

#[test]
fn sighup_reloads_and_a_bad_config_keeps_the_old_one() {
    let mut w = World::new(&["bank.test"], "");
    let res = via_root(&w, "bank.test", &[]);
    assert_ne!(
        res.http_code, 200,
        "decrypted at first, so the test root alone cannot verify it"
    );
    let cfg = sluice_test_support::GatewayConfig::for_pki(&w.pki)
        .hosts(&["bank.test"])
        .connect_ports(&[w.origin.port()])
        .extra_toml("[[policy]]\nname = \"default\"\nbypass = { domains = [\"bank.test\"] }\n");
    w.gw.reconfigure(cfg);
    w.gw.sighup();
    w.gw.wait_for_stderr("sluice reloaded", Duration::from_secs(10));
    let res = via_root(&w, "bank.test", &[]);
    assert_eq!(
        res.http_code, 200,
        "bypassed after the reload: {}",
        res.output.stderr
    );

    std::fs::write(w.gw.config_path(), "[proxy]\nbogus = true\n").unwrap();
    w.gw.sighup();
    w.gw.wait_for_stderr("sluice reload failed", Duration::from_secs(10));
    assert_eq!(
        via_root(&w, "bank.test", &[]).http_code,
        200,
        "the old config keeps serving"
    );
}

#[test]
fn policy_test_runs_cases_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(&cfg, "[[policy]]\nname = \"default\"\nblock = { apps = [\"tiktok\"] }\nbypass = { domains = [\"*.bank.example\"] }\n").unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        "[[case]]\nhost = \"zoom.us\"\nexpect = \"bypass:global\"\n\
        [[case]]\nhost = \"www.tiktok.com\"\nexpect = \"block\"\n\
        [[case]]\nhost = \"online.bank.example\"\nclient = \"10.0.0.1\"\nexpect = \"bypass\"\n",
    )
    .unwrap();
    let run = |cases: &std::path::Path| {
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["policy", "test"])
            .arg(cases)
            .output()
            .unwrap()
    };
    let out = run(&cases);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 passed, 0 failed"));
    std::fs::write(
        &cases,
        "[[case]]\nhost = \"example.org\"\nexpect = \"bypass\"\n",
    )
    .unwrap();
    let out = run(&cases);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
}
