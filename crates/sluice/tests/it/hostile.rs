//! Bad input on the proxy port and inside tunnels: the gateway answers each with a clear
//! status or closes, never forwards it, and keeps serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_test_support::{curl_response_via, raw_proxy_exchange};
use tokio::io::AsyncWrite;

use crate::{World, LOG_WAIT};

fn status_line(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn still_serving(w: &World) {
    let res = curl_response_via(&w.gw, &w.url("origin.test", "/"), &[]);
    assert_eq!(
        res.http_code, 200,
        "the gateway must keep serving: {}",
        res.output.stderr
    );
}

#[test]
fn refusals_have_clear_statuses() {
    let w = World::new(&["origin.test"], "");
    let proxy = w.gw.proxy_addr();
    let t = Duration::from_secs(5);
    let reply = raw_proxy_exchange(
        proxy,
        b"CONNECT origin.test:25 HTTP/1.1\r\nHost: origin.test:25\r\n\r\n",
        t,
    );
    assert!(
        status_line(&reply).contains(" 403 "),
        "{}",
        status_line(&reply)
    );
    assert!(String::from_utf8_lossy(&reply).contains("port_not_allowed"));
    let reply = raw_proxy_exchange(proxy, b"\x16\x03\x01garbage garbage\r\n\r\n", t);
    assert!(
        status_line(&reply).contains(" 400 "),
        "{}",
        status_line(&reply)
    );
    let mut big = b"GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n".to_vec();
    for i in 0..3000 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(30)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let reply = raw_proxy_exchange(proxy, &big, t);
    assert!(
        status_line(&reply).contains(" 431 "),
        "{}",
        status_line(&reply)
    );
    for bad in [
        &b"CONNECT origin.test HTTP/1.1\r\n\r\n"[..],
        b"CONNECT origin.test:0 HTTP/1.1\r\n\r\n",
        b"CONNECT user@origin.test:443 HTTP/1.1\r\n\r\n",
    ] {
        let reply = raw_proxy_exchange(proxy, bad, t);
        assert!(
            status_line(&reply).contains(" 400 "),
            "{:?} -> {}",
            String::from_utf8_lossy(bad),
            status_line(&reply)
        );
    }
    still_serving(&w);
}

#[test]
fn rejected_connect_is_answered_once_and_closed() {
    let w = World::new(&["origin.test"], "");
    let payload = b"CONNECT origin.test:25 HTTP/1.1\r\nHost: origin.test:25\r\n\r\nGET http://origin.test/smuggled HTTP/1.1\r\nHost: origin.test\r\n\r\n";
    let reply = raw_proxy_exchange(w.gw.proxy_addr(), payload, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&reply);
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "exactly one response: {text}"
    );
    assert!(w.origin.requests().iter().all(|r| r.path != "/smuggled"));
}

#[test]
fn non_tls_bytes_in_a_tunnel_never_reach_the_origin() {
    let w = World::new(&["origin.test"], "");
    let mut s = TcpStream::connect(w.gw.proxy_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let connect = format!(
        "CONNECT origin.test:{0} HTTP/1.1\r\nHost: origin.test:{0}\r\n\r\n",
        w.origin.port()
    );
    s.write_all(connect.as_bytes()).unwrap();
    let mut head = [0u8; 39];
    s.read_exact(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
    s.write_all(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("hello from"),
        "{rest:?}"
    );
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["reason"] == "non_tls",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "block");
    // At most the gateway's own TCP connect (the origin may not have accepted it yet).
    assert!(
        w.origin.connections() <= 1,
        "only the gateway's TCP connect, never a request"
    );
    assert!(w.origin.requests().is_empty());
    still_serving(&w);
}

/// Writes one byte per write call, flushing each: the ClientHello arrives as many segments.
struct OneByte<S>(S);

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for OneByte<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for OneByte<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(1);
        match Pin::new(&mut self.0).poll_write(cx, &buf[..n]) {
            Poll::Ready(Ok(n)) => {
                let _ = Pin::new(&mut self.0).poll_flush(cx);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[test]
fn client_hello_one_byte_per_write_still_works() {
    let w = World::new(
        &["origin.test", "bank.test"],
        "[[policy]]\nname = \"default\"\nbypass = { domains = [\"bank.test\"] }\n",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (host, root, expect_issuer_gateway) in [
            ("origin.test", w.gw.ca_pem_path(), true),
            ("bank.test", w.root(), false),
        ] {
            let tunnel = sluice_test_support::connect_tunnel(
                w.gw.proxy_addr(),
                &format!("{host}:{}", w.origin.port()),
            )
            .await;
            tunnel.set_nodelay(true).unwrap();
            let opts = sluice_test_support::clients::TlsClientOptions::new(host)
                .root(root)
                .alpn(&["http/1.1"]);
            let tls = sluice_test_support::clients::tls_over_tunnel_with(OneByte(tunnel), &opts)
                .await
                .unwrap();
            let issuer = sluice_test_support::peer_cert_issuer_cn(&tls);
            assert_eq!(
                issuer == sluice_test_support::pki::INTERMEDIATE_CN,
                !expect_issuer_gateway,
                "{host}: {issuer}"
            );
            let resp = sluice_test_support::clients::http_get(tls, host, "/")
                .await
                .unwrap();
            assert_eq!(resp.status, 200, "{host}");
        }
    });
    // Dropping the runtime closes the client connections, which ends the bypass relay.
    drop(rt);
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "bank.test",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "bypass");
}

#[test]
fn sni_mismatch_never_turns_a_bypass_into_a_tunnel() {
    let w = World::new(
        &["origin.test", "bank.test"],
        "[[policy]]\nname = \"default\"\nbypass = { domains = [\"bank.test\"] }\n",
    );
    // CONNECT to a decrypted host while claiming the exempt name in SNI: decrypted, not relayed.
    let out = sluice_test_support::openssl_s_client(
        w.gw.proxy_addr(),
        &format!("origin.test:{}", w.origin.port()),
        &[
            "-servername",
            "bank.test",
            "-CAfile",
            w.gw.ca_pem_path().to_str().unwrap(),
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(sluice_test_support::pki::INTERMEDIATE_CN) || text.contains("sluice"),
        "{text}"
    );
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["sni"] == "bank.test",
        LOG_WAIT,
    );
    assert_ne!(rec["decision"], "bypass", "{rec}");
    assert_eq!(rec["sni_mismatch"], true);
}

/// An origin that only accepts secp384r1 key exchange, so clients offering X25519 first get a
/// HelloRetryRequest. Answers `HTTP/1.1 200` to anything.
pub(crate) async fn hrr_origin(leaf: &sluice_test_support::Leaf) -> std::net::SocketAddr {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::SECP384R1];
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain_der.clone(), leaf.key_der())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

fn client_hello(sni: &str) -> Vec<u8> {
    client_hello_with(sni, true)
}

/// The first flight of a real rustls client for `sni`; with `send_sni` false, a hello without
/// the `server_name` extension (as clients connecting to an IP literal send).
pub(crate) fn client_hello_with(sni: &str, send_sni: bool) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(vec![0u8]))
        .ok();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.enable_sni = send_sni;
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

#[test]
fn a_hello_retry_cannot_change_the_sni_of_a_bypass_pe13() {
    let dir = tempfile::tempdir().unwrap();
    let pki = sluice_test_support::TestPki::new(dir.path());
    let leaf = pki.leaf(&["bank.test"], sluice_test_support::LeafOpts::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let origin = rt.block_on(hrr_origin(&leaf));
    let cfg = sluice_test_support::GatewayConfig::for_pki(&pki)
        .hosts(&["bank.test"])
        .connect_ports(&[origin.port()])
        .extra_toml("[[policy]]\nname = \"default\"\nbypass = { domains = [\"bank.test\"] }\n");
    let gw = sluice_test_support::TestGateway::start(crate::BIN, cfg);
    let target = format!("bank.test:{}", origin.port());
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A real client completes its handshake through the retry.
        let tunnel = sluice_test_support::connect_tunnel(gw.proxy_addr(), &target).await;
        let opts = sluice_test_support::clients::TlsClientOptions::new("bank.test")
            .root(pki.root_pem_path())
            .alpn(&["http/1.1"]);
        let tls = sluice_test_support::clients::tls_over_tunnel_with(tunnel, &opts)
            .await
            .expect("handshake through a HelloRetryRequest");
        let resp = sluice_test_support::clients::http_get(tls, "bank.test", "/")
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        // A client that names another server in its second ClientHello is cut off.
        let mut raw = sluice_test_support::connect_tunnel(gw.proxy_addr(), &target).await;
        raw.write_all(&client_hello("bank.test")).await.unwrap();
        let mut hrr = [0u8; 64];
        raw.read_exact(&mut hrr[..43]).await.unwrap();
        assert_eq!(hrr[5], 0x02, "the server's HelloRetryRequest is relayed");
        raw.write_all(&client_hello("elsewhere.test"))
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut rest)).await;
    });
    let rec = gw.wait_for_log(|r| r["reason"] == "sni_changed_after_hrr", LOG_WAIT);
    assert_eq!(rec["decision"], "block");
}
