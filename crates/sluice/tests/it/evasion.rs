//! Policy evasion and handshake tricks from the security matrix (PE-01, PE-02, PE-03, PE-05,
//! PE-08, PE-12, TD-05, FT-02) against the real binary: hand-built ClientHellos (malformed,
//! duplicate, GREASE, ECH), names that disagree, resumption and renegotiation, and clients
//! that give up at every stage.

use std::time::{Duration, Instant};

use sluice_test_support::clients::rawch::RawHello;
use sluice_test_support::clients::try_connect_tunnel;
use sluice_test_support::{openssl_s_client, LeafOpts, TestOrigin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{World, LOG_WAIT};

const EXEMPT_AND_BLOCKED: &str = "[[policy]]\nname = \"default\"\n\
    bypass = { domains = [\"exempt.test\", \"_u.test\", \"ech-public.test\"] }\n\
    block = { domains = [\"blocked.test\"] }\n";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What the gateway sent back after `CONNECT target` + `hello`: the CONNECT status and the
/// first TLS bytes (empty when it closed without a word).
fn exchange(w: &World, target: &str, hello: &[u8]) -> (u16, Vec<u8>) {
    rt().block_on(async {
        let (reply, mut s) = try_connect_tunnel(w.gw.proxy_addr(), target, &[])
            .await
            .unwrap();
        if reply.status != 200 {
            return (reply.status, Vec::new());
        }
        s.write_all(hello).await.unwrap();
        let mut out = vec![0u8; 6];
        let mut got = 0;
        let deadline = tokio::time::sleep(Duration::from_secs(15));
        tokio::pin!(deadline);
        while got < 6 {
            tokio::select! {
                n = s.read(&mut out[got..]) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                },
                () = &mut deadline => panic!("no answer from the gateway to a ClientHello"),
            }
        }
        out.truncate(got);
        (200, out)
    })
}

fn is_alert(answer: &[u8]) -> bool {
    answer.first() == Some(&0x15)
}

fn is_server_hello(answer: &[u8]) -> bool {
    answer.len() == 6 && answer[0] == 0x16 && answer[5] == 0x02
}

fn connect_record(w: &World, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    w.gw.wait_for_log(|r| r["kind"] == "connect" && pred(r), LOG_WAIT)
}

#[test]
fn connect_host_and_sni_disagree_the_stricter_wins_pe01() {
    let w = World::new(&["exempt.test", "blocked.test"], EXEMPT_AND_BLOCKED);
    let port = w.origin.port();
    // CONNECT to the blocked name is refused before any tunnel exists.
    let (status, _) = exchange(
        &w,
        &format!("blocked.test:{port}"),
        &RawHello::new().sni("exempt.test").wire(),
    );
    assert_eq!(status, 403);
    // CONNECT to the exempt name, SNI for the blocked one: never spliced, blocked.
    let (status, answer) = exchange(
        &w,
        &format!("exempt.test:{port}"),
        &RawHello::new().sni("blocked.test").wire(),
    );
    assert_eq!(status, 200);
    assert!(is_alert(&answer), "{answer:?}");
    let rec = connect_record(&w, |r| r["sni"] == "blocked.test");
    assert_eq!(rec["decision"], "block", "{rec}");
    assert_eq!(rec["host"], "exempt.test");
    assert_eq!(rec["sni_mismatch"], true);
    assert_eq!(w.origin.tls_handshakes(), 0, "nothing reached the origin");
}

#[test]
fn a_spliced_tunnel_is_audited_and_exempt_names_are_exact_pe02() {
    let w = World::new(
        &["exempt.test", "sub.exempt.test", "blocked.test"],
        EXEMPT_AND_BLOCKED,
    );
    let blocked = TestOrigin::builder()
        .tls(&w.leaf)
        .name("blocked.test")
        .start_blocking();
    let target = format!("exempt.test:{}", w.origin.port());
    let status = rt().block_on(async {
        let tunnel = sluice_test_support::connect_tunnel(w.gw.proxy_addr(), &target).await;
        let opts = sluice_test_support::clients::TlsClientOptions::new("exempt.test")
            .root(w.root())
            .alpn(&["http/1.1"]);
        let tls = sluice_test_support::clients::tls_over_tunnel_with(tunnel, &opts)
            .await
            .unwrap();
        // Domain fronting: the Host names a blocked site. A splice cannot see it; what it
        // can guarantee is where the bytes went.
        sluice_test_support::clients::http_get(tls, "blocked.test", "/")
            .await
            .unwrap()
            .status
    });
    assert_eq!(status, 200);
    let rec = connect_record(&w, |r| r["host"] == "exempt.test");
    assert_eq!(rec["decision"], "bypass", "{rec}");
    assert_eq!(rec["sni"], "exempt.test");
    assert_eq!(
        rec["dest"],
        format!("127.0.0.1:{}", w.origin.port()),
        "{rec}"
    );
    assert_eq!(blocked.connections(), 0, "no other upstream contacted");
    // An exact rule does not exempt its subdomains.
    let res = sluice_test_support::curl_response_via(
        &w.gw,
        &w.url("sub.exempt.test", "/"),
        &["--cacert", w.gw.ca_pem_path().to_str().unwrap()],
    );
    assert_eq!(res.http_code, 200, "{}", res.output.stderr);
    let rec = connect_record(&w, |r| r["host"] == "sub.exempt.test");
    assert_eq!(rec["decision"], "decrypt", "{rec}");
}

#[test]
fn an_ip_literal_connect_with_an_exempt_sni_is_verified_not_spliced_pe03() {
    // The origin only holds a certificate for blocked.test.
    let w = World::with(&["blocked.test"], LeafOpts::default(), |c| {
        c.extra_toml("[[policy]]\nname = \"default\"\nbypass = { domains = [\"exempt.test\"] }\n")
    });
    let out = openssl_s_client(
        w.gw.proxy_addr(),
        &format!("127.0.0.1:{}", w.origin.port()),
        &["-servername", "exempt.test"],
        b"GET / HTTP/1.1\r\nHost: exempt.test\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("hello from"), "{text}");
    // Decrypted (never spliced), so the upstream was verified against the SNI and failed.
    let rec = connect_record(&w, |r| r["sni"] == "exempt.test");
    assert_eq!(rec["decision"], "block", "{rec}");
    assert_eq!(rec["sni_mismatch"], true);
    assert_eq!(rec["reason"], "upstream_cert_name_mismatch", "{rec}");
    assert!(w.origin.requests().is_empty());
}

#[test]
fn without_sni_the_connect_host_decides_pe05() {
    let w = World::new(&["exempt.test", "ok.test"], EXEMPT_AND_BLOCKED);
    let port = w.origin.port();
    for (host, decision) in [("exempt.test", "bypass"), ("ok.test", "decrypt")] {
        let out = openssl_s_client(
            w.gw.proxy_addr(),
            &format!("{host}:{port}"),
            &["-noservername"],
            b"",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let rec = connect_record(&w, |r| r["host"] == host);
        assert_eq!(rec["decision"], decision, "{host}: {rec}");
        assert!(rec["sni"].is_null());
        let issuer = sluice_test_support::clients::s_client_issuer_cn(&out).unwrap_or_default();
        assert_eq!(
            issuer.starts_with("sluice CA"),
            decision == "decrypt",
            "{host}: issuer {issuer}\n{text}"
        );
    }
}

#[test]
fn malformed_and_duplicate_sni_are_refused_never_truncated_pe08() {
    let w = World::new(&["ok.test", "_u.test", "exempt.test"], EXEMPT_AND_BLOCKED);
    let target = format!("ok.test:{}", w.origin.port());
    let long_label = format!("{}.test", "a".repeat(64));
    let long_name = format!("{}.test", vec!["a".repeat(60); 5].join("."));
    let cases: Vec<(&str, RawHello, &str)> = vec![
        (
            "label > 63",
            RawHello::new().sni_raw(&[long_label.as_bytes()]),
            "bad_sni",
        ),
        (
            "name > 253",
            RawHello::new().sni_raw(&[long_name.as_bytes()]),
            "bad_sni",
        ),
        (
            "NUL inside",
            RawHello::new().sni_raw(&[b"ok.test\0evil"]),
            "bad_sni",
        ),
        (
            "LF inside",
            RawHello::new().sni_raw(&[b"ok.test\n{\"action\":\"allow\"}"]),
            "bad_sni",
        ),
        (
            "space inside",
            RawHello::new().sni_raw(&[b"ok.test evil"]),
            "bad_sni",
        ),
        ("empty", RawHello::new().sni_raw(&[b""]), "bad_sni"),
        (
            "two names",
            RawHello::new().sni_raw(&[b"exempt.test", b"ok.test"]),
            "bad_sni",
        ),
        (
            "two extensions",
            RawHello::new().sni("exempt.test").sni("ok.test"),
            "client_hello_malformed",
        ),
        ("IP literal", RawHello::new().sni("127.0.0.1"), "bad_sni"),
    ];
    for (i, (what, hello, reason)) in cases.iter().enumerate() {
        let (status, answer) = exchange(&w, &target, &hello.wire());
        assert_eq!(status, 200, "{what}");
        assert!(answer.is_empty() || is_alert(&answer), "{what}: {answer:?}");
        // One record per refused hello, in order.
        let recs =
            w.gw.wait_for_logs(|r| r["kind"] == "connect", i + 1, LOG_WAIT);
        let rec = recs.last().unwrap();
        assert_eq!(
            (&rec["decision"], &rec["reason"]),
            (&"block".into(), &(*reason).into()),
            "{what}: {rec}"
        );
    }
    assert_eq!(
        w.origin.tls_handshakes(),
        0,
        "no malformed hello went upstream"
    );
    // `_` is accepted the same way in CONNECT, SNI and rules.
    let (status, answer) = exchange(
        &w,
        &format!("_u.test:{}", w.origin.port()),
        &RawHello::new().sni("_u.test").wire(),
    );
    assert_eq!(status, 200);
    assert!(!is_alert(&answer), "{answer:?}");
    let rec = connect_record(&w, |r| r["host"] == "_u.test");
    assert_eq!(rec["decision"], "bypass", "{rec}");
    assert_eq!(rec["sni"], "_u.test");
}

#[test]
fn grease_is_accepted_and_ech_is_logged_but_never_widens_a_bypass_pe12() {
    let w = World::new(&["ok.test", "ech-public.test"], EXEMPT_AND_BLOCKED);
    let port = w.origin.port();
    let (_, answer) = exchange(
        &w,
        &format!("ok.test:{port}"),
        &RawHello::new().sni("ok.test").grease().wire(),
    );
    assert!(
        is_server_hello(&answer),
        "GREASE hello answered: {answer:?}"
    );
    let rec = connect_record(&w, |r| r["host"] == "ok.test");
    assert_eq!(rec["decision"], "decrypt", "{rec}");
    assert!(rec.get("ech").is_none(), "{rec}");

    // Real ECH behind a proxy: CONNECT names the site, the outer SNI the provider's public
    // name, which is on the bypass list. The names differ, so it is never spliced.
    let ech = RawHello::new().sni("ech-public.test").grease().ech_outer();
    let (_, answer) = exchange(&w, &format!("ok.test:{port}"), &ech.wire());
    assert!(is_server_hello(&answer), "{answer:?}");
    let rec = connect_record(&w, |r| r["sni"] == "ech-public.test");
    assert_eq!(rec["decision"], "decrypt", "{rec}");
    assert_eq!(rec["sni_mismatch"], true, "{rec}");
    assert_eq!(rec["ech"], true, "{rec}");
    // A GREASE ECH extension (what browsers send on every connection) changes no decision.
    exchange(&w, &format!("ech-public.test:{port}"), &ech.wire());
    let rec = connect_record(&w, |r| r["host"] == "ech-public.test");
    assert_eq!(rec["decision"], "bypass", "{rec}");
    assert_eq!(rec["ech"], true);
}

/// CPU seconds the gateway has used so far (utime + stime from /proc).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A full handshake to `target` that stays until the server's session ticket has arrived
/// (TLS 1.3 sends it after the handshake), saved to `path`.
fn save_session(w: &World, target: &str, ca: &str, path: &std::path::Path) {
    let host = target.split(':').next().unwrap();
    let out = openssl_s_client(
        w.gw.proxy_addr(),
        target,
        &[
            "-CAfile",
            ca,
            "-ign_eof",
            "-sess_out",
            path.to_str().unwrap(),
        ],
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("New,"), "{text}");
    assert!(path.exists(), "no session saved: {text}");
}

#[test]
fn renegotiation_early_data_and_resumption_td05() {
    let w = World::new(&["ok.test", "a.test"], "");
    let port = w.origin.port();
    let ca = w.gw.ca_pem_path().to_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();

    // TLS 1.2 renegotiation: refused, and the gateway does not spin.
    let cpu_before = cpu_seconds(w.gw.pid());
    let mut child = std::process::Command::new("openssl")
        .args(["s_client", "-proxy", &w.gw.proxy_addr().to_string()])
        .args([
            "-connect",
            &format!("ok.test:{port}"),
            "-servername",
            "ok.test",
        ])
        .args(["-CAfile", &ca, "-tls1_2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // `R` asks s_client to renegotiate; keep stdin open until the gateway reacts.
        stdin.write_all(b"R\n").unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(stdin);
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("RENEGOTIATING"), "{text}");
    assert!(text.contains("no renegotiation"), "{text}");
    let used = cpu_seconds(w.gw.pid()) - cpu_before;
    assert!(
        used < 2.0,
        "gateway used {used} s of CPU: a renegotiation loop?"
    );

    // 0-RTT: early data is never accepted, the request reaches the origin at most once.
    let sess = dir.path().join("ok.pem");
    let early = dir.path().join("early.txt");
    std::fs::write(&early, b"GET /early HTTP/1.1\r\nHost: ok.test\r\n\r\n").unwrap();
    let target = format!("ok.test:{port}");
    save_session(&w, &target, &ca, &sess);
    let out = openssl_s_client(
        w.gw.proxy_addr(),
        &target,
        &[
            "-CAfile",
            &ca,
            "-sess_in",
            sess.to_str().unwrap(),
            "-early_data",
            early.to_str().unwrap(),
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Early data was accepted"), "{text}");
    let early_seen = w
        .origin
        .requests()
        .iter()
        .filter(|r| r.path == "/early")
        .count();
    assert!(early_seen <= 1, "early data replayed {early_seen} times");

    // A session from a.test is not resumed under ok.test.
    let a_sess = dir.path().join("a.pem");
    save_session(&w, &format!("a.test:{port}"), &ca, &a_sess);
    let out = openssl_s_client(
        w.gw.proxy_addr(),
        &target,
        &[
            "-CAfile",
            &ca,
            "-servername",
            "ok.test",
            "-sess_in",
            a_sess.to_str().unwrap(),
        ],
        b"",
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("New,"), "{text}");
    assert!(!text.contains("Reused,"), "{text}");
}

#[test]
fn resumption_never_carries_a_decision_td05() {
    let w = World::new(&["a.test"], "");
    let port = w.origin.port();
    let ca = w.gw.ca_pem_path().to_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let sess = dir.path().join("a.pem");
    let target = format!("a.test:{port}");
    save_session(&w, &target, &ca, &sess);
    // Block a.test by SNI only (the CONNECT goes to its address), then resume.
    let text = w.gw.config_text()
        + "\n[[policy]]\nname = \"default\"\nblock = { domains = [\"a.test\"] }\n";
    std::fs::write(w.gw.config_path(), text).unwrap();
    w.gw.sighup();
    w.gw.wait_for_stderr("sluice reloaded", LOG_WAIT);
    let out = openssl_s_client(
        w.gw.proxy_addr(),
        &format!("127.0.0.1:{port}"),
        &[
            "-CAfile",
            &ca,
            "-servername",
            "a.test",
            "-sess_in",
            sess.to_str().unwrap(),
        ],
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("Reused,"), "{text}");
    assert!(!text.contains("hello from"), "{text}");
    let rec = connect_record(&w, |r| r["sni"] == "a.test" && r["decision"] == "block");
    assert_eq!(rec["reason"], "blocked:domain", "{rec}");
}

/// A client session store that files every ticket under `a.test` and offers it to whatever
/// server is asked for: a client presenting a.test's ticket to ok.test (rustls and OpenSSL
/// clients never do this by themselves).
#[derive(Debug)]
struct OneTicketForAll(rustls::client::ClientSessionMemoryCache);

fn a_test() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("a.test").unwrap()
}

impl rustls::client::ClientSessionStore for OneTicketForAll {
    fn set_kx_hint(&self, _: rustls::pki_types::ServerName<'static>, g: rustls::NamedGroup) {
        self.0.set_kx_hint(a_test(), g);
    }
    fn kx_hint(&self, _: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.0.kx_hint(&a_test())
    }
    fn set_tls12_session(
        &self,
        _: rustls::pki_types::ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.0.set_tls12_session(a_test(), v);
    }
    fn tls12_session(
        &self,
        _: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.0.tls12_session(&a_test())
    }
    fn remove_tls12_session(&self, _: &rustls::pki_types::ServerName<'static>) {
        self.0.remove_tls12_session(&a_test());
    }
    fn insert_tls13_ticket(
        &self,
        _: rustls::pki_types::ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        self.0.insert_tls13_ticket(a_test(), v);
    }
    fn take_tls13_ticket(
        &self,
        _: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.0.take_tls13_ticket(&a_test())
    }
}

#[test]
fn a_ticket_for_one_name_is_never_resumed_under_another_td05() {
    let w = World::new(&["ok.test", "a.test"], "");
    let port = w.origin.port();
    let store = std::sync::Arc::new(OneTicketForAll(
        rustls::client::ClientSessionMemoryCache::new(64),
    ));
    // One config for every connection: rustls only resumes a session under the verifier
    // that checked it.
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    let ca = rustls::pki_types::CertificateDer::from_pem_file(w.gw.ca_pem_path()).unwrap();
    roots.add(ca).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(sluice_test_support::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.resumption = rustls::client::Resumption::store(store);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let kinds = rt().block_on(async {
        let mut kinds = Vec::new();
        for host in ["a.test", "a.test", "a.test", "ok.test"] {
            let tunnel =
                sluice_test_support::connect_tunnel(w.gw.proxy_addr(), &format!("{host}:{port}"))
                    .await;
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
            let tls = connector.connect(name, tunnel).await.unwrap();
            kinds.push(tls.get_ref().1.handshake_kind());
            // Reading the response also takes in the tickets the server sent.
            let res = sluice_test_support::clients::http_get(tls, host, "/")
                .await
                .unwrap();
            assert_eq!(res.status, 200);
        }
        kinds
    });
    use rustls::HandshakeKind::{Full, Resumed};
    // The store works (a.test resumes), and its ticket gets no resumption for ok.test.
    assert_eq!(kinds[0], Some(Full));
    assert!(kinds[1..3].contains(&Some(Resumed)), "{kinds:?}");
    assert_eq!(kinds[3], Some(Full), "{kinds:?}");
}

/// Polls the gateway's `sluice_active_connections` until it is 0.
fn wait_idle(w: &World) {
    let url = format!("{}/metrics", w.gw.admin_url());
    let auth = format!("Authorization: Bearer {}", crate::admin::token(&w.gw));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = sluice_test_support::curl(&["-s", "-H", &auth, &url]);
        let active = out
            .stdout_str()
            .lines()
            .find(|l| l.starts_with("sluice_active_connections "))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|v| v.parse::<f64>().ok());
        if active == Some(0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connections still active after client aborts: {active:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn client_aborts_at_every_stage_leave_nothing_behind_ft02() {
    let w = World::new(&["ok.test"], "");
    let port = w.origin.port();
    let proxy = w.gw.proxy_addr();
    let hello = RawHello::new().sni("ok.test").wire();
    rt().block_on(async {
        // During CONNECT: half a request head.
        let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
        s.write_all(b"CONNECT ok.test:").await.unwrap();
        drop(s);
        // After 200, before any TLS byte.
        let (_, s) = try_connect_tunnel(proxy, &format!("ok.test:{port}"), &[])
            .await
            .unwrap();
        drop(s);
        // Mid-ClientHello.
        let (_, mut s) = try_connect_tunnel(proxy, &format!("ok.test:{port}"), &[])
            .await
            .unwrap();
        s.write_all(&hello[..40]).await.unwrap();
        drop(s);
        // Mid-handshake: the whole hello, then gone before the server's flight is read.
        let (_, mut s) = try_connect_tunnel(proxy, &format!("ok.test:{port}"), &[])
            .await
            .unwrap();
        s.write_all(&hello).await.unwrap();
        let mut first = [0u8; 1];
        let _ = s.read(&mut first).await;
        drop(s);
    });
    // Mid-upload and mid-download, with curl killed by the OS.
    for args in [
        vec!["-T", "/dev/zero", "--limit-rate", "1M"],
        vec!["--limit-rate", "100K", "-o", "/dev/null"],
    ] {
        let url = if args[0] == "-T" {
            w.url("ok.test", "/echo")
        } else {
            w.url("ok.test", "/bytes/100000000")
        };
        let ca = w.gw.ca_pem_path().to_str().unwrap().to_owned();
        let proxy_url = w.gw.proxy_url();
        let mut cmd = std::process::Command::new("timeout");
        cmd.args(["-s", "KILL", "1", "curl", "-s", "--proxy", &proxy_url])
            .args(["--cacert", &ca])
            .args(&args)
            .arg(&url);
        let status = cmd.status().unwrap();
        assert!(!status.success(), "curl should have been killed: {args:?}");
    }
    wait_idle(&w);
    let recs = w.gw.access_log();
    let connects: Vec<_> = recs.iter().filter(|r| r["kind"] == "connect").collect();
    // Every tunnel ended in exactly one record, with a reason that says how.
    assert!(connects.len() >= 5, "{recs:?}");
    let reasons: Vec<&str> = connects
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"client_closed_before_hello"),
        "{reasons:?}"
    );
    let mut ids: Vec<u64> = connects
        .iter()
        .filter_map(|r| r["conn_id"].as_u64())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "conn_id reused");
    // The gateway still serves.
    let res = sluice_test_support::curl_response_via(
        &w.gw,
        &w.url("ok.test", "/"),
        &["--cacert", w.gw.ca_pem_path().to_str().unwrap()],
    );
    assert_eq!(res.http_code, 200);
}
