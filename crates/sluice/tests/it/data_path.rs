//! The data path end to end: decrypt, bypass, pinning clients, h2, upstream validation
//! failures, plain HTTP, WebSocket.

use serde_json::Value;
use sluice_test_support::pki::INTERMEDIATE_CN;
use sluice_test_support::{curl, curl_response, curl_response_via, LeafOpts, TestOrigin, Validity};

use crate::{World, LOG_WAIT};

const BYPASS_BANK: &str =
    "[[policy]]\nname = \"default\"\nbypass = { domains = [\"bank.test\"] }\n";

fn gateway_issuer(w: &World) -> String {
    let pem = std::fs::read_to_string(w.gw.ca_pem_path()).unwrap();
    let der = rustls_pki_types_der(&pem);
    sluice_test_support::clients::cert_subject_cn(&der)
}

fn rustls_pki_types_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn decrypts_with_the_gateway_ca_and_logs_the_decision() {
    let w = World::new(&["origin.test"], "");
    let res = curl_response_via(&w.gw, &w.url("origin.test", "/"), &[]);
    assert_eq!(res.http_code, 200, "{:?}", res.output.stderr);
    assert_eq!(res.body_str(), "hello from origin.test");
    assert_eq!(
        res.issuer_cn(),
        Some(gateway_issuer(&w)),
        "curl must see a leaf minted by the sluice CA"
    );
    let conn = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "origin.test",
        LOG_WAIT,
    );
    assert_eq!(conn["decision"], "decrypt");
    assert_eq!(conn["reason"], "default");
    assert_eq!(conn["sni"], "origin.test");
    assert!(
        conn["ja4"].as_str().is_some_and(|j| j.starts_with('t')),
        "{conn}"
    );
    assert!(
        conn["upstream_cert"]["issuer"]
            .as_str()
            .unwrap()
            .contains(INTERMEDIATE_CN),
        "{conn}"
    );
    assert!(conn["bytes_down"].as_u64().unwrap() > 0);
    // Both TLS legs and where the bytes went (security matrix DL-01).
    assert_eq!(conn["tls_version"], "TLSv1.3", "{conn}");
    assert_eq!(conn["client_tls_version"], "TLSv1.3", "{conn}");
    for leg in ["tls_cipher", "client_tls_cipher"] {
        assert!(
            conn[leg].as_str().is_some_and(|c| c.starts_with("TLS13_")),
            "{leg}: {conn}"
        );
    }
    assert_eq!(
        conn["dest"],
        format!("127.0.0.1:{}", w.origin.port()),
        "{conn}"
    );
    let req = w.gw.wait_for_log(
        |r| r["kind"] == "request" && r["host"] == "origin.test",
        LOG_WAIT,
    );
    assert_eq!(req["status"], 200);
    assert_eq!(req["method"], "GET");
    assert_eq!(req["conn_id"], conn["conn_id"]);
}

#[test]
fn bypass_keeps_the_origin_certificate_and_pinning_works() {
    let w = World::new(&["bank.test", "origin.test"], BYPASS_BANK);
    let pin = format!("sha256//{}", w.leaf.spki_sha256_b64);
    let root = w.root().to_str().unwrap().to_owned();
    let proxy = w.gw.proxy_url();
    let res = curl_response(&[
        "--proxy",
        &proxy,
        "--cacert",
        &root,
        "--pinnedpubkey",
        &pin,
        &w.url("bank.test", "/"),
    ]);
    assert_eq!(
        res.http_code, 200,
        "pinned client through a bypass: {}",
        res.output.stderr
    );
    assert_eq!(res.issuer_cn().as_deref(), Some(INTERMEDIATE_CN));
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "bank.test",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "bypass");
    assert_eq!(rec["reason"], "policy");
    assert!(rec["rule"].as_str().unwrap().contains("bank.test"), "{rec}");
    assert!(rec["bytes_up"].as_u64().unwrap() > 0 && rec["bytes_down"].as_u64().unwrap() > 0);

    // The same pinned client through decryption fails: it sees the sluice leaf.
    let ca = w.gw.ca_pem_path().to_str().unwrap().to_owned();
    let out = curl(&[
        "--proxy",
        &proxy,
        "--cacert",
        &ca,
        "--pinnedpubkey",
        &pin,
        &w.url("origin.test", "/"),
    ]);
    assert_eq!(out.code, 90, "pinned key mismatch expected: {}", out.stderr);
}

#[test]
fn http2_end_to_end() {
    let w = World::new(&["origin.test"], "");
    let res = curl_response_via(&w.gw, &w.url("origin.test", "/headers"), &["--http2"]);
    assert_eq!(res.http_code, 200, "{}", res.output.stderr);
    assert_eq!(res.http_version, "2");
    let seen = w.origin.requests();
    assert_eq!(
        seen.last().unwrap().version,
        "HTTP/2",
        "origin must see h2: {seen:?}"
    );
    let res = curl_response_via(&w.gw, &w.url("origin.test", "/"), &["--http1.1"]);
    assert_eq!(res.http_version, "1.1");
    assert_eq!(w.origin.requests().last().unwrap().version, "HTTP/1.1");
}

#[test]
fn keep_alive_and_bodies_stream_both_ways() {
    let w = World::new(&["origin.test"], "");
    let big = w.url("origin.test", "/bytes/3000000");
    let out = curl_response_via(&w.gw, &big, &[]);
    assert_eq!(out.body.len(), 3_000_000);
    assert_eq!(out.body, sluice_test_support::origin::pattern(0, 3_000_000));
    let upload = w._dir.path().join("upload.bin");
    std::fs::write(&upload, vec![b'x'; 200_000]).unwrap();
    let echo = w.url("origin.test", "/echo");
    let arg = format!("@{}", upload.display());
    let res = curl_response_via(&w.gw, &echo, &["--data-binary", &arg, "--http1.1"]);
    assert_eq!(res.body.len(), 200_000);
    // Two URLs, one client connection: one CONNECT, two requests.
    let a = w.url("origin.test", "/a");
    let b = w.url("origin.test", "/b");
    let res = curl_response_via(&w.gw, &a, &[&b]);
    assert_eq!(res.http_code, 200);
    w.gw.wait_for_logs(
        |r| r["kind"] == "request" && r["url"].as_str().is_some_and(|u| u.ends_with("/b")),
        1,
        LOG_WAIT,
    );
    // Request records carry the bytes of their own bodies.
    let ends = |suffix: &'static str| {
        move |r: &Value| {
            r["kind"] == "request" && r["url"].as_str().is_some_and(|u| u.ends_with(suffix))
        }
    };
    let big = w.gw.wait_for_log(ends("/bytes/3000000"), LOG_WAIT);
    assert_eq!(big["bytes_down"], 3_000_000, "{big}");
    let echo = w.gw.wait_for_log(ends("/echo"), LOG_WAIT);
    assert_eq!(echo["bytes_up"], 200_000, "{echo}");
    assert_eq!(echo["bytes_down"], 200_000, "{echo}");
}

fn failing_upstream(opts: LeafOpts, names: &[&str], serve_as: &str) -> (World, u16) {
    let w = World::with(names, opts, |c| c);
    let res = curl_response_via(&w.gw, &w.url(serve_as, "/"), &[]);
    assert!(
        !res.body_str().contains("hello from"),
        "client must never get the origin's body"
    );
    (w, res.http_code)
}

#[test]
fn upstream_certificate_failures_never_reach_the_client() {
    for (name, opts, reason) in [
        (
            "expired.test",
            LeafOpts {
                validity: Validity::Expired,
                ..Default::default()
            },
            "upstream_cert_expired",
        ),
        (
            "self.test",
            LeafOpts {
                issuer: sluice_test_support::LeafIssuer::SelfSigned,
                ..Default::default()
            },
            "upstream_cert_self_signed",
        ),
        (
            "untrusted.test",
            LeafOpts {
                issuer: sluice_test_support::LeafIssuer::Untrusted,
                ..Default::default()
            },
            "upstream_cert_unknown_issuer",
        ),
    ] {
        let (w, code) = failing_upstream(opts, &[name], name);
        assert_eq!(code, 502, "{name}");
        let rec =
            w.gw.wait_for_log(|r| r["kind"] == "connect" && r["host"] == name, LOG_WAIT);
        assert_eq!(rec["decision"], "block", "{name}: {rec}");
        // A leaf whose issuer was not sent reads as a missing intermediate (the test PKI's
        // untrusted root signs leaves directly and the origin sends only the leaf).
        let alternatives = [reason, "upstream_cert_incomplete_chain"];
        let alt = if name == "untrusted.test" {
            &alternatives[..]
        } else {
            &alternatives[..1]
        };
        assert!(alt.iter().any(|r| rec["reason"] == *r), "{name}: {rec}");
        assert!(
            w.origin.requests().is_empty(),
            "{name}: no request may reach the origin"
        );
    }
}

#[test]
fn wrong_host_certificate_is_a_name_mismatch() {
    // The origin serves a certificate for other.test; the client asks for wrong-host.test.
    let dir = tempfile::tempdir().unwrap();
    let pki = sluice_test_support::TestPki::new(dir.path());
    let leaf = pki.leaf(&["other.test"], LeafOpts::default());
    let origin = TestOrigin::builder()
        .tls(&leaf)
        .name("other.test")
        .start_blocking();
    let cfg = sluice_test_support::GatewayConfig::for_pki(&pki)
        .hosts(&["wrong-host.test"])
        .connect_ports(&[origin.port()]);
    let gw = sluice_test_support::TestGateway::start(crate::BIN, cfg);
    let res = curl_response_via(&gw, &origin.url("wrong-host.test", "/"), &[]);
    assert_eq!(res.http_code, 502);
    assert_eq!(
        res.header("x-sluice-reason"),
        Some("upstream_cert_name_mismatch")
    );
    assert!(origin.requests().is_empty());
}

#[test]
fn plain_http_is_forwarded_without_hop_by_hop_headers() {
    let origin = TestOrigin::builder().name("plain.test").start_blocking();
    let dir = tempfile::tempdir().unwrap();
    let pki = sluice_test_support::TestPki::new(dir.path());
    let cfg = sluice_test_support::GatewayConfig::for_pki(&pki).hosts(&["plain.test"]);
    let gw = sluice_test_support::TestGateway::start(crate::BIN, cfg);
    let url = origin.url("plain.test", "/headers");
    let out = curl(&[
        "--proxy",
        &gw.proxy_url(),
        "-H",
        "Connection: keep-alive, X-Drop",
        "-H",
        "X-Drop: 1",
        "-H",
        "Keep-Alive: 5",
        "-H",
        "X-Keep: 1",
        &url,
        &url,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("x-keep"), "{text}");
    assert!(
        !text.contains("x-drop")
            && !text.contains("keep-alive")
            && !text.contains("proxy-connection"),
        "{text}"
    );
    assert_eq!(
        origin.connections(),
        1,
        "keep-alive upstream: both requests on one connection"
    );
    let rec = gw.wait_for_log(
        |r| r["kind"] == "request" && r["host"] == "plain.test",
        LOG_WAIT,
    );
    assert_eq!(rec["status"], 200);
}

#[test]
fn websocket_over_decrypted_http11() {
    let w = World::new(&["origin.test"], "");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tunnel = sluice_test_support::connect_tunnel(
            w.gw.proxy_addr(),
            &format!("origin.test:{}", w.origin.port()),
        )
        .await;
        let opts = sluice_test_support::clients::TlsClientOptions::new("origin.test")
            .root(w.gw.ca_pem_path())
            .alpn(&["http/1.1"]);
        let mut tls = sluice_test_support::clients::tls_over_tunnel_with(tunnel, &opts)
            .await
            .unwrap();
        sluice_test_support::ws::client_handshake(&mut tls, "origin.test", "/ws")
            .await
            .unwrap();
        sluice_test_support::ws::send_client_frame(
            &mut tls,
            sluice_test_support::ws::OP_TEXT,
            b"ping through sluice",
        )
        .await
        .unwrap();
        let frame = sluice_test_support::ws::read_frame(&mut tls)
            .await
            .unwrap()
            .expect("an echo frame");
        assert_eq!(frame.opcode, sluice_test_support::ws::OP_TEXT);
        assert_eq!(frame.payload, b"ping through sluice");
    });
}

#[test]
fn private_destinations_are_refused_unless_allowed() {
    let w = World::with(&["origin.test"], LeafOpts::default(), |c| {
        c.remove("upstream.allow_private")
    });
    let res = curl_response_via(&w.gw, &w.url("origin.test", "/"), &[]);
    assert_eq!(
        res.http_code, 0,
        "CONNECT refused, no response from the origin"
    );
    let rec = w.gw.wait_for_log(|r| r["kind"] == "connect", LOG_WAIT);
    assert_eq!(rec["status"], 403);
    assert_eq!(rec["reason"], "destination_refused");
    assert_eq!(w.origin.connections(), 0);
    // The admin listener is never reachable through the proxy, in any spelling.
    let admin = w.gw.admin_addr();
    for target in [
        format!("127.0.0.1:{}", admin.port()),
        format!("localhost:{}", admin.port()),
        format!("2130706433:{}", admin.port()),
    ] {
        let url = format!("http://{target}/live");
        let out = curl(&[
            "--proxy",
            &w.gw.proxy_url(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "{target}");
    }
}

#[test]
fn access_log_lines_are_json_objects() {
    let w = World::new(&["origin.test"], "");
    curl_response_via(&w.gw, &w.url("origin.test", "/"), &[]);
    w.gw.wait_for_logs(|r| r["kind"] == "connect", 1, LOG_WAIT);
    for line in w.gw.stdout_lines() {
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.is_object());
    }
}

#[test]
fn a_minted_leaf_never_outlives_the_origin_certificate_ck03() {
    let w = World::new(&["origin.test"], "");
    let target = format!("origin.test:{}", w.origin.port());
    let leaf = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let tunnel = sluice_test_support::connect_tunnel(w.gw.proxy_addr(), &target).await;
            let tls = sluice_test_support::tls_over_tunnel(
                tunnel,
                Some("origin.test"),
                w.gw.ca_pem_path(),
                &["http/1.1"],
            )
            .await
            .unwrap();
            tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
        });
    let not_after = |der: &[u8]| {
        x509_parser::parse_x509_certificate(der)
            .unwrap()
            .1
            .validity()
            .not_after
            .timestamp()
    };
    // The test origin's certificate expires in 30 days, before the leaf lifetime would end.
    let origin = not_after(w.leaf.cert_der.as_ref());
    let minted = not_after(&leaf);
    assert!(
        minted <= origin,
        "leaf {minted} outlives the origin {origin}"
    );
    assert!(
        origin - minted < 120,
        "clamped to the origin, not far below it"
    );
}
