//! The admin listener over HTTPS, off loopback (issue 12 item 4, security matrix HC-04):
//! - its certificate covers the configured names only (`admin.tls_names`), is minted once at
//!   start and kept, whatever SNI a client sends before it has authenticated (no leaf per SNI,
//!   nothing in the data path's leaf cache);
//! - the session cookie is `Secure; HttpOnly; SameSite=Strict` over HTTPS;
//! - the Origin check accepts the listener's own `https://` origin, so a real browser logs in.
//!
//! The loopback range is all "loopback" to the gateway (plain HTTP there), so these gateways
//! listen on 0.0.0.0 and every client connects to 127.0.0.1: no traffic leaves the machine.

use std::collections::BTreeSet;
use std::process::Command;

use fantoccini::Locator;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sluice_test_support::{curl_response, CurlResponse, GatewayConfig, TestGateway};
use x509_parser::extensions::GeneralName;

use crate::browser::Browser;
use crate::BIN;

const TOKEN: &str = "an-admin-token-for-the-https-tests";

/// A gateway whose admin listener is off loopback, with `tls_names` when given.
fn gateway(tls_names: Option<&[&str]>) -> TestGateway {
    let mut cfg = GatewayConfig::new()
        .set("admin.listen", "0.0.0.0:0")
        .set("admin.token_file", "admin-token")
        .file("admin-token", TOKEN);
    if let Some(names) = tls_names {
        let list: Vec<toml::Value> = names.iter().map(|n| (*n).into()).collect();
        cfg = cfg.set("admin.tls_names", toml::Value::Array(list));
    }
    TestGateway::start(BIN, cfg)
}

/// The certificate chain the admin listener sends for `sni` (openssl s_client, direct).
fn served_chain(port: u16, sni: Option<&str>) -> Vec<Vec<u8>> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-showcerts", "-connect"])
        .arg(format!("127.0.0.1:{port}"));
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    CertificateDer::pem_slice_iter(&out.stdout)
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// The SANs of a DER certificate, as `dns:NAME` / `ip:ADDR` strings.
fn sans(der: &[u8]) -> BTreeSet<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                format!("ip:{}", std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            GeneralName::IPAddress(b) => {
                let octets: [u8; 16] = (*b).try_into().unwrap();
                format!("ip:{}", std::net::Ipv6Addr::from(octets))
            }
            other => format!("other:{other:?}"),
        })
        .collect()
}

/// curl over HTTPS to the admin listener as `https://{host}:{port}{path}` (host mapped to
/// 127.0.0.1), trusting the sluice CA.
fn https(gw: &TestGateway, host: &str, path: &str, extra: &[&str]) -> CurlResponse {
    let port = gw.admin_addr().port();
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let mut args = vec![
        "--cacert",
        gw.ca_pem_path().to_str().unwrap(),
        "--resolve",
        &resolve,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    curl_response(&args)
}

fn metric(gw: &TestGateway, name: &str) -> u64 {
    let auth = format!("Authorization: Bearer {TOKEN}");
    let text = https(gw, "127.0.0.1", "/metrics", &["-H", &auth]).body_str();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
}

#[test]
fn one_admin_certificate_for_the_configured_names_whatever_the_sni_hc04() {
    let gw = gateway(Some(&["admin.test", "127.0.0.1"]));
    let port = gw.admin_addr().port();
    let first = served_chain(port, Some("admin.test"));
    assert!(!first.is_empty(), "the admin listener speaks TLS");
    assert_eq!(
        sans(&first[0]),
        BTreeSet::from(["dns:admin.test".to_owned(), "ip:127.0.0.1".to_owned()]),
        "the configured names, and only them"
    );
    // Unauthenticated clients asking for any name get that same certificate: nothing minted.
    for i in 0..40 {
        let sni = format!("x{i}.attacker.test");
        assert_eq!(served_chain(port, Some(&sni))[0], first[0], "{sni}");
    }
    assert_eq!(served_chain(port, None)[0], first[0], "no SNI");
    assert_eq!(metric(&gw, "sluice_leaves_minted_total"), 0);
    assert_eq!(metric(&gw, "sluice_leaf_cache_entries"), 0);

    // The configured name and address verify; another name does not.
    let auth = format!("Authorization: Bearer {TOKEN}");
    for host in ["admin.test", "127.0.0.1"] {
        let r = https(&gw, host, "/api/config", &["-H", &auth]);
        assert_eq!(
            r.http_code,
            200,
            "{host}: {} {}",
            r.output.stderr,
            r.body_str()
        );
    }
    let r = https(&gw, "localhost", "/api/config", &["-H", &auth]);
    assert_eq!(r.output.code, 60, "localhost is not a configured name");
    // Another name rides on the same certificate only if the client skips verification, and
    // the Host allow-list refuses it anyway.
    let r = https(&gw, "evil.test", "/api/config", &["-k", "-H", &auth]);
    assert_eq!(r.http_code, 421, "{}", r.body_str());
}

#[test]
fn default_names_are_the_loopback_addresses_and_the_host_name() {
    let gw = gateway(None);
    let port = gw.admin_addr().port();
    let names = sans(&served_chain(port, Some("whatever.test"))[0]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let short = host.trim().split('.').next().unwrap().to_ascii_lowercase();
    for want in [
        format!("dns:{short}"),
        "dns:localhost".into(),
        "ip:127.0.0.1".into(),
        "ip:::1".into(),
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert_eq!(metric(&gw, "sluice_leaves_minted_total"), 0);
}

#[test]
fn https_login_sets_a_secure_cookie_and_accepts_its_own_origin() {
    let gw = gateway(Some(&["admin.test"]));
    let port = gw.admin_addr().port();
    let own = format!("Origin: https://admin.test:{port}");
    let form = format!("token={TOKEN}");
    let r = https(&gw, "admin.test", "/login", &["-H", &own, "--data", &form]);
    assert_eq!(r.http_code, 303, "{}", r.body_str());
    let cookie = r.header("set-cookie").expect("a session cookie").to_owned();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    // The http:// spelling of the same host is another origin over HTTPS.
    for origin in [
        format!("Origin: http://admin.test:{port}"),
        "Origin: https://evil.test".into(),
        format!("Origin: https://admin.test:{port}.evil.test"),
        "Origin: null".into(),
    ] {
        // HTTP/1.1: over h2 a refusal sent before the request body was read ends the stream
        // with RST_STREAM, which curl sometimes reports as error 92 instead of the 403.
        let r = https(
            &gw,
            "admin.test",
            "/login",
            &["--http1.1", "-H", &origin, "--data", &form],
        );
        assert_eq!(
            r.http_code,
            403,
            "{origin}: {} {}",
            r.output.stderr,
            r.body_str()
        );
    }
    // A session cookie from HTTPS is accepted there, with its CSRF token for changes.
    let session = cookie.split(';').next().unwrap().to_owned();
    let r = https(
        &gw,
        "admin.test",
        "/",
        &["-H", &format!("Cookie: {session}")],
    );
    assert_eq!(r.http_code, 200);
}

#[test]
fn chromium_logs_in_over_https_and_logs_out() {
    let gw = gateway(Some(&["admin.test"]));
    let port = gw.admin_addr().port();
    let b = Browser::start();
    b.trust("sluice", gw.ca_pem_path());
    let c = b.session_with(
        None,
        &["--host-resolver-rules=MAP admin.test 127.0.0.1".to_owned()],
    );
    let admin = format!("https://admin.test:{port}");
    b.goto(&c, &format!("{admin}/login"));
    assert!(b.text(&c, "h1").contains("Log in"));
    b.block(async {
        c.find(Locator::Id("token")).await?.send_keys(TOKEN).await?;
        c.find(Locator::Id("login")).await?.click().await
    })
    .unwrap();
    b.block(c.wait().for_element(Locator::Id("chart")))
        .unwrap_or_else(|e| {
            let body = b.text(&c, "body");
            panic!("no dashboard after logging in over HTTPS: {e}: {body}")
        });
    b.screenshot(&c, "admin-https-dashboard");
    let cookies = b.block(c.get_all_cookies()).unwrap();
    let session = cookies
        .iter()
        .find(|k| k.name() == "sluice_session")
        .expect("the session cookie");
    assert_eq!(session.secure(), Some(true));
    assert_eq!(session.http_only(), Some(true));
    // A state change from the page (CSRF token and Origin checked): logging out.
    b.block(async { c.find(Locator::Id("logout")).await?.click().await })
        .unwrap();
    b.block(c.wait().for_element(Locator::Id("token"))).unwrap();
    b.goto(&c, &format!("{admin}/pinning"));
    assert!(b.text(&c, "h1").contains("Log in"), "logged out");
    b.close(c);
}
