//! Security matrix FT-03 (DNS failures) and the DNS-rebinding part of PE-17, end to end: the
//! real gateway resolves through the stub DNS server of `sluice-test-support`
//! (`upstream.dns_servers`), curl goes through it, and each failure must come back as its
//! status, `X-Sluice-Reason` and access-log `reason`, within the resolve deadline, with a
//! bounded number of queries per name.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use sluice_test_support::{curl_response_via, GatewayConfig, LeafOpts, StubDns, TestGateway};
use sluice_test_support::{TestOrigin, TestPki};
use toml::Value;

use crate::{BIN, LOG_WAIT};

/// Resolve through `stub` with a 1 s deadline; loopback refused except 127.0.1.0/24 (the lab's
/// egress allow-list, security matrix §2.2).
fn dns_config(cfg: GatewayConfig, stub: &StubDns) -> GatewayConfig {
    cfg.set(
        "upstream.dns_servers",
        Value::Array(vec![stub.server().into()]),
    )
    .set("upstream.dns_timeout", "1s")
    .set(
        "upstream.allow_private",
        Value::Array(vec!["127.0.1.0/24".into()]),
    )
}

/// One request through the gateway: (CONNECT status, X-Sluice-Reason, access-log reason).
fn refused(gw: &TestGateway, name: &str) -> (u16, String, String) {
    let res = curl_response_via(gw, &format!("https://{name}/"), &[]);
    assert_eq!(res.http_code, 0, "{name}: no response beyond the CONNECT");
    let header = res.header("x-sluice-reason").unwrap_or_default().to_owned();
    let rec = gw.wait_for_log(|r| r["kind"] == "connect" && r["host"] == name, LOG_WAIT);
    assert_eq!(rec["status"], res.http_connect, "{name}: {rec}");
    let reason = rec["reason"].as_str().unwrap_or_default().to_owned();
    (res.http_connect, header, reason)
}

#[test]
fn dns_failures_answer_with_their_status_and_reason() {
    let stub = StubDns::start();
    let gw = TestGateway::start(BIN, dns_config(GatewayConfig::new(), &stub));
    for (name, status, reason) in [
        ("nx.test", 502, "dns_nxdomain"),
        ("sf.test", 502, "dns_servfail"),
        ("garbage.test", 502, "dns_bad_reply"),
        // ::1 only: loopback is outside the allow-list, refused before any connect.
        ("v6.test", 403, "destination_refused"),
    ] {
        let got = refused(&gw, name);
        assert_eq!(got, (status, reason.into(), reason.into()), "{name}");
        // One A and one AAAA query, no retries.
        assert_eq!(stub.queries(name), 2, "{name}");
    }
}

#[test]
fn a_silent_dns_server_is_a_504_within_the_resolve_deadline() {
    let stub = StubDns::start();
    let gw = TestGateway::start(BIN, dns_config(GatewayConfig::new(), &stub));
    let started = Instant::now();
    let got = refused(&gw, "to.test");
    let took = started.elapsed();
    assert_eq!(got, (504, "dns_timeout".into(), "dns_timeout".into()));
    // dns_timeout is 1 s; before it existed the connect timeout (10 s) bounded resolution.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(stub.queries("to.test"), 2);
}

#[test]
fn nxdomain_is_cached_so_repeats_send_no_query() {
    let stub = StubDns::start();
    let gw = TestGateway::start(BIN, dns_config(GatewayConfig::new(), &stub));
    for _ in 0..5 {
        let res = curl_response_via(&gw, "https://nx.test/", &[]);
        assert_eq!(res.http_connect, 502);
        assert_eq!(res.header("x-sluice-reason"), Some("dns_nxdomain"));
    }
    gw.wait_for_logs(|r| r["reason"] == "dns_nxdomain", 5, LOG_WAIT);
    // The stub's SOA allows 30 s of negative caching: only the first request asked.
    assert_eq!(stub.queries("nx.test"), 2);
    // SERVFAIL is not cached, but each request still costs only its two queries.
    for _ in 0..3 {
        let res = curl_response_via(&gw, "https://sf.test/", &[]);
        assert_eq!(res.http_connect, 502);
    }
    assert_eq!(stub.queries("sf.test"), 6);
}

#[test]
fn a_name_resolved_by_the_dns_server_reaches_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let leaf = pki.leaf(&["ok.test"], LeafOpts::default());
    let origin = TestOrigin::builder()
        .tls(&leaf)
        .name("ok.test")
        .bind_ip(Ipv4Addr::new(127, 0, 1, 1))
        .start_blocking();
    let stub = StubDns::builder()
        .name("ok.test", origin.addr().ip())
        .start();
    let cfg = dns_config(GatewayConfig::for_pki(&pki), &stub).connect_ports(&[origin.port()]);
    let gw = TestGateway::start(BIN, cfg);
    let res = curl_response_via(&gw, &origin.url("ok.test", "/"), &[]);
    assert_eq!(res.http_code, 200, "{}", res.output.stderr);
    assert_eq!(res.body_str(), "hello from ok.test");
    assert_eq!(origin.requests().len(), 1);
    assert_eq!(stub.queries("ok.test"), 2);
    let rec = gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "ok.test",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "decrypt", "{rec}");
}

/// An origin for rebind.test on 127.0.1.1, and a listener on 127.0.0.1 at the same port that
/// must never see a connection (the address the rebinding answer points at).
fn rebind_origin(pki: &TestPki) -> (TestOrigin, TcpListener) {
    let leaf = pki.leaf(&["rebind.test"], LeafOpts::default());
    for _ in 0..20 {
        let origin = TestOrigin::builder()
            .tls(&leaf)
            .name("rebind.test")
            .bind_ip(Ipv4Addr::new(127, 0, 1, 1))
            .start_blocking();
        // The port is free on 127.0.1.1; it may be taken on 127.0.0.1: then try another.
        if let Ok(trap) = TcpListener::bind((Ipv4Addr::LOCALHOST, origin.port())) {
            trap.set_nonblocking(true).unwrap();
            return (origin, trap);
        }
    }
    panic!("no port free on both 127.0.1.1 and 127.0.0.1");
}

#[test]
fn dns_rebinding_never_dials_the_refused_address() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let (origin, trap) = rebind_origin(&pki);
    let stub = StubDns::start();
    let cfg = dns_config(GatewayConfig::for_pki(&pki), &stub).connect_ports(&[origin.port()]);
    let gw = TestGateway::start(BIN, cfg);
    let url = origin.url("rebind.test", "/");
    // First answer 127.0.1.1 (allowed): the request reaches the origin there.
    let first = curl_response_via(&gw, &url, &[]);
    assert_eq!(first.http_code, 200, "{}", first.output.stderr);
    // Second answer (TTL 0, so asked again) 127.0.0.1: refused, not dialled.
    let second = curl_response_via(&gw, &url, &[]);
    assert_eq!(second.http_connect, 403);
    assert_eq!(
        second.header("x-sluice-reason"),
        Some("destination_refused")
    );
    let rec = gw.wait_for_log(|r| r["reason"] == "destination_refused", LOG_WAIT);
    assert_eq!(rec["host"], "rebind.test", "{rec}");
    assert_eq!(stub.queries_of("rebind.test", "A"), 2);
    assert_eq!(origin.requests().len(), 1);
    match trap.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the gateway connected to 127.0.0.1: {other:?}"),
    }
}
