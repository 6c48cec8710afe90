//! Client helpers through a stand-in CONNECT proxy (a few lines below) and straight to an
//! origin: CONNECT, rustls over the tunnel, s_client, raw exchanges, curl through a proxy.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_test_support::clients::{
    http_get, s_client_issuer_cn, tls_over_tunnel_with, try_connect_tunnel, TlsClientOptions,
    Verify,
};
use sluice_test_support::origin::TestOrigin;
use sluice_test_support::pki::{LeafIssuer, LeafOpts, INTERMEDIATE_CN};
use sluice_test_support::{
    connect_tunnel, curl_response, openssl_s_client, peer_cert_issuer_cn, raw_proxy_exchange,
    tls_over_tunnel,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

use crate::util::{leaf, pki, s};

/// A CONNECT-only proxy sending every tunnel to `upstream` and answering anything else 405;
/// enough to exercise the client helpers without the gateway.
async fn stand_in_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(head) = sluice_test_support::clients::read_head(&mut client).await else {
                    return;
                };
                if !head.starts_with("CONNECT ") {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rustls_client_over_a_connect_tunnel() {
    let (_d, pki) = pki();
    let origin = TestOrigin::https(&leaf(&pki, &["origin.test"])).await;
    let proxy = stand_in_proxy(origin.addr()).await;

    let tunnel = connect_tunnel(proxy, "origin.test:443").await;
    let tls = tls_over_tunnel(
        tunnel,
        Some("origin.test"),
        pki.root_pem_path(),
        &["h2", "http/1.1"],
    )
    .await
    .expect("TLS over the tunnel");
    assert_eq!(peer_cert_issuer_cn(&tls), INTERMEDIATE_CN);
    let res = http_get(tls, "origin.test", "/headers").await.expect("GET");
    assert_eq!((res.status, res.version.as_str()), (200, "HTTP/2"));
    assert_eq!(res.header("x-origin"), Some("origin.test"));

    // No SNI: the name is not checked, the chain still is.
    let tunnel = connect_tunnel(proxy, "origin.test:443").await;
    let tls = tls_over_tunnel(tunnel, None, pki.root_pem_path(), &["http/1.1"])
        .await
        .expect("no-SNI TLS");
    let res = http_get(tls, "origin.test", "/").await.expect("GET");
    assert_eq!((res.status, res.version.as_str()), (200, "HTTP/1.1"));
    assert_eq!(origin.sni_seen()[1], None);

    // Wrong trust anchor: the client rejects the chain (unknown CA).
    let tunnel = connect_tunnel(proxy, "origin.test:443").await;
    let err = tls_over_tunnel(
        tunnel,
        Some("origin.test"),
        pki.untrusted_root_pem_path(),
        &[],
    )
    .await
    .expect_err("untrusted chain must fail");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // Wrong name, with and without name checking.
    let tunnel = connect_tunnel(proxy, "origin.test:443").await;
    let opts = TlsClientOptions::new("other.test").root(pki.root_pem_path());
    assert!(tls_over_tunnel_with(tunnel, &opts).await.is_err());
    let tunnel = connect_tunnel(proxy, "origin.test:443").await;
    let lax = opts.clone().verify(Verify::IgnoreName);
    tls_over_tunnel_with(tunnel, &lax)
        .await
        .expect("name ignored");
    let tunnel = connect_tunnel(proxy, "origin.test:443").await;
    let none = TlsClientOptions::new("x.test").verify(Verify::Nothing);
    tls_over_tunnel_with(tunnel, &none)
        .await
        .expect("nothing verified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connect_and_raw_exchange() {
    let origin = TestOrigin::http().await;
    let proxy = stand_in_proxy(origin.addr()).await;
    let reply = tokio::task::spawn_blocking(move || {
        raw_proxy_exchange(
            proxy,
            b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(2),
        )
    })
    .await
    .expect("raw exchange");
    assert!(
        reply.starts_with(b"HTTP/1.1 405"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    let (reply, _stream) =
        try_connect_tunnel(proxy, "x.test:443", &["Proxy-Authorization: Basic eDp5"])
            .await
            .expect("CONNECT");
    assert_eq!(reply.status, 200);
    assert!(reply.head.contains("Connection established"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_client_and_curl_through_a_proxy_see_the_issuer() {
    let (_d, pki) = pki();
    let by_root = pki.leaf(
        &["origin.test"],
        LeafOpts {
            issuer: LeafIssuer::Root,
            ..LeafOpts::default()
        },
    );
    let origin = TestOrigin::https(&by_root).await;
    let proxy = stand_in_proxy(origin.addr()).await;
    let root = s(pki.root_pem_path()).to_owned();

    let out = tokio::task::spawn_blocking(move || {
        openssl_s_client(
            proxy,
            "origin.test:443",
            &["-CAfile", &root, "-alpn", "http/1.1", "-ign_eof"],
            b"GET / HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .expect("s_client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        s_client_issuer_cn(&out).as_deref(),
        Some(sluice_test_support::pki::ROOT_CN),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Verify return code: 0 (ok)"), "{stdout}");
    assert!(stdout.contains("hello from origin.test"), "{stdout}");
    assert_eq!(origin.sni_seen(), vec![Some("origin.test".into())]);

    let proxy_url = format!("http://{proxy}");
    let root = s(pki.root_pem_path()).to_owned();
    let res = tokio::task::spawn_blocking(move || {
        curl_response(&[
            "--proxy",
            &proxy_url,
            "--cacert",
            &root,
            "https://origin.test/",
        ])
    })
    .await
    .expect("curl");
    assert_eq!(res.http_code, 200, "{}", res.output.stderr);
    assert_eq!(
        res.issuer_cn().as_deref(),
        Some(sluice_test_support::pki::ROOT_CN)
    );
    assert_eq!(res.subject_cn().as_deref(), Some("origin.test"));
    assert_eq!(
        res.header("x-origin"),
        Some("origin.test"),
        "CONNECT reply headers are skipped"
    );
}
