//! TestOrigin against real curl: h2 and http/1.1, the routes, pinning, the misbehaving modes.

use std::time::Duration;

use sluice_test_support::origin::{pattern, Misbehave, TestOrigin};
use sluice_test_support::{curl, curl_response, ws};
use tokio::net::TcpStream;

use crate::util::{leaf, pki, s};

#[tokio::test]
async fn https_origin_speaks_h2_and_http11_to_curl() {
    let (_d, pki) = pki();
    let origin = TestOrigin::https(&leaf(&pki, &["origin.test"])).await;
    let url = origin.url("origin.test", "/");
    let resolve = origin.resolve_arg("origin.test");
    let base = ["--cacert", s(pki.root_pem_path()), "--resolve", &resolve];

    let h2 = curl_response(&[&base[..], &[url.as_str()]].concat());
    assert_eq!(h2.http_code, 200, "{}", h2.output.stderr);
    assert_eq!(h2.http_version, "2");
    assert_eq!(h2.body_str(), "hello from origin.test");
    assert_eq!(h2.header("x-origin"), Some("origin.test"));
    assert_eq!(h2.header("x-seen-version"), Some("HTTP/2"));
    assert_eq!(
        h2.issuer_cn().as_deref(),
        Some(sluice_test_support::pki::INTERMEDIATE_CN)
    );

    let h1 = curl_response(&[&base[..], &["--http1.1", url.as_str()]].concat());
    assert_eq!(h1.http_code, 200, "{}", h1.output.stderr);
    assert_eq!(h1.http_version, "1.1");
    assert_eq!(
        h1.header("x-seen-host"),
        Some(format!("origin.test:{}", origin.port()).as_str())
    );

    let seen = origin.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].version, "HTTP/2");
    assert_eq!(seen[1].version, "HTTP/1.1");
    assert_eq!(seen[1].method, "GET");
    assert_eq!(seen[1].path, "/");
    assert_eq!(origin.tls_handshakes(), 2);
    assert_eq!(origin.connections(), 2);
    assert_eq!(
        origin.alpn_seen(),
        vec![Some("h2".into()), Some("http/1.1".into())]
    );
    assert_eq!(origin.sni_seen(), vec![Some("origin.test".into()); 2]);
}

#[tokio::test]
async fn bytes_echo_and_headers_routes() {
    let (_d, pki) = pki();
    let origin = TestOrigin::https(&leaf(&pki, &["origin.test"])).await;
    let resolve = origin.resolve_arg("origin.test");
    let base = [
        "--cacert",
        s(pki.root_pem_path()),
        "--resolve",
        resolve.as_str(),
    ];

    let n = 1_000_003;
    let url = origin.url("origin.test", &format!("/bytes/{n}"));
    let out = curl(&[&base[..], &[url.as_str()]].concat());
    out.assert_ok();
    assert_eq!(out.stdout.len(), n);
    assert!(out.stdout == pattern(0, n), "pattern mismatch");

    // A large body streams without the origin holding it: check the size only.
    let url = origin.url("origin.test", "/bytes/67108864");
    let out = curl(
        &[
            &base[..],
            &["-o", "/dev/null", "-w", "%{size_download}", url.as_str()],
        ]
        .concat(),
    );
    assert_eq!(out.assert_ok().stdout_str(), "67108864");

    let body_file = tempfile::NamedTempFile::new().expect("temp file");
    let payload = pattern(7, 300_000);
    std::fs::write(body_file.path(), &payload).expect("write payload");
    let data = format!("@{}", s(body_file.path()));
    let url = origin.url("origin.test", "/echo");
    for version in ["--http1.1", "--http2"] {
        let res = curl_response(
            &[
                &base[..],
                &[version, "--data-binary", data.as_str(), url.as_str()],
            ]
            .concat(),
        );
        assert_eq!(res.http_code, 200, "{}", res.output.stderr);
        assert!(res.body == payload, "echo mismatch over {version}");
    }

    let url = origin.url("origin.test", "/headers");
    let res = curl_response(&[&base[..], &["--http1.1", "-H", "X-Test: a", url.as_str()]].concat());
    let json: serde_json::Value = serde_json::from_slice(&res.body).expect("headers JSON");
    assert_eq!(json["x-test"][0], "a");
    assert!(json["user-agent"][0]
        .as_str()
        .is_some_and(|ua| ua.starts_with("curl/")));
    assert_eq!(res.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn pinned_public_key_matches_the_leaf() {
    let (_d, pki) = pki();
    let leaf = leaf(&pki, &["pin.test"]);
    let origin = TestOrigin::https(&leaf).await;
    let resolve = origin.resolve_arg("pin.test");
    let url = origin.url("pin.test", "/");
    let pin = format!("sha256//{}", leaf.spki_sha256_b64);
    let ok = curl(&[
        "--cacert",
        s(pki.root_pem_path()),
        "--resolve",
        &resolve,
        "--pinnedpubkey",
        &pin,
        &url,
    ]);
    assert_eq!(ok.assert_ok().stdout_str(), "hello from pin.test");
    let other = pki.leaf(&["pin.test"], Default::default());
    let bad_pin = format!("sha256//{}", other.spki_sha256_b64);
    let bad = curl(&[
        "--cacert",
        s(pki.root_pem_path()),
        "--resolve",
        &resolve,
        "--pinnedpubkey",
        &bad_pin,
        &url,
    ]);
    assert_eq!(
        bad.code, 90,
        "pin mismatch is curl error 90: {}",
        bad.stderr
    );
}

#[tokio::test]
async fn plain_origin_alpn_option_and_incomplete_chain() {
    let origin = TestOrigin::http().await;
    let url = format!("http://127.0.0.1:{}/", origin.port());
    assert_eq!(curl(&[&url]).assert_ok().stdout_str(), "hello from origin");
    let h2c = curl_response(&["--http2-prior-knowledge", &url]);
    assert_eq!(h2c.http_version, "2");

    let (_d, pki) = pki();
    let leaf = leaf(&pki, &["h1only.test"]);
    let h1only = TestOrigin::builder()
        .tls(&leaf)
        .alpn(&["http/1.1"])
        .start()
        .await;
    let res = curl_response(&[
        "--cacert",
        s(pki.root_pem_path()),
        "--resolve",
        &h1only.resolve_arg("h1only.test"),
        &h1only.url("h1only.test", "/"),
    ]);
    assert_eq!(res.http_version, "1.1", "{}", res.output.stderr);
    assert_eq!(h1only.alpn_seen(), vec![Some("http/1.1".into())]);

    let incomplete = TestOrigin::builder()
        .tls(&leaf)
        .leaf_only()
        .name("incomplete")
        .start()
        .await;
    let out = curl(&[
        "--cacert",
        s(pki.root_pem_path()),
        "--resolve",
        &incomplete.resolve_arg("h1only.test"),
        &incomplete.url("h1only.test", "/"),
    ]);
    assert_eq!(out.code, 60, "missing intermediate: {}", out.stderr);
}

#[tokio::test]
async fn websocket_echo_over_plain_and_tls() {
    let origin = TestOrigin::http().await;
    let mut tcp = TcpStream::connect(origin.addr()).await.expect("connect");
    ws::client_handshake(&mut tcp, "origin.test", "/ws")
        .await
        .expect("101");
    ws::send_client_frame(&mut tcp, ws::OP_TEXT, b"hello ws")
        .await
        .expect("send");
    let frame = ws::read_frame(&mut tcp)
        .await
        .expect("read")
        .expect("a frame");
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (ws::OP_TEXT, &b"hello ws"[..])
    );
    ws::send_client_frame(&mut tcp, ws::OP_CLOSE, b"")
        .await
        .expect("close");
    let close = ws::read_frame(&mut tcp)
        .await
        .expect("read")
        .expect("close frame");
    assert_eq!(close.opcode, ws::OP_CLOSE);

    let (_d, pki) = pki();
    let tls_origin = TestOrigin::https(&leaf(&pki, &["ws.test"])).await;
    let tcp = TcpStream::connect(tls_origin.addr())
        .await
        .expect("connect");
    let mut tls = sluice_test_support::tls_over_tunnel(
        tcp,
        Some("ws.test"),
        pki.root_pem_path(),
        &["http/1.1"],
    )
    .await
    .expect("TLS");
    ws::client_handshake(&mut tls, "ws.test", "/ws")
        .await
        .expect("101 over TLS");
    ws::send_client_frame(&mut tls, ws::OP_BINARY, &[0, 1, 2, 255])
        .await
        .expect("send");
    let frame = ws::read_frame(&mut tls)
        .await
        .expect("read")
        .expect("a frame");
    assert_eq!(frame.payload, vec![0, 1, 2, 255]);
}

#[tokio::test]
async fn misbehaving_modes_fail_curl_as_expected() {
    let (_d, pki) = pki();
    let leaf = leaf(&pki, &["faults.test"]);
    let run = |origin: &TestOrigin, extra: &[&str]| {
        let resolve = origin.resolve_arg("faults.test");
        let url = origin.url("faults.test", "/");
        let mut args = vec![
            "--cacert",
            s(pki.root_pem_path()),
            "--resolve",
            resolve.as_str(),
            "-o",
            "/dev/null",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    };
    let start = |mode| {
        TestOrigin::builder()
            .tls(&leaf)
            .misbehave(mode)
            .start_blocking()
    };

    let rst = start(Misbehave::ResetMidBody);
    let out = run(&rst, &[]);
    // 56: failure receiving (reset); 18: partial file.
    assert!(
        [18, 56].contains(&out.code),
        "rst-mid: code {} {}",
        out.code,
        out.stderr
    );
    assert_eq!(rst.requests().len(), 1);

    let fin = start(Misbehave::CloseMidBody);
    let out = run(&fin, &[]);
    assert!(
        [18, 56].contains(&out.code),
        "fin-mid: code {} {}",
        out.code,
        out.stderr
    );

    let stall = start(Misbehave::StallAfterAccept);
    let out = run(&stall, &["--max-time", "1"]);
    assert_eq!(out.code, 28, "stall-tcp times out: {}", out.stderr);
    assert_eq!(stall.connections(), 1);
    assert_eq!(stall.tls_handshakes(), 0);

    let stall_tls = start(Misbehave::StallInHandshake);
    assert_eq!(run(&stall_tls, &["--max-time", "1"]).code, 28);

    let stall_req = start(Misbehave::StallAfterRequest);
    assert_eq!(run(&stall_req, &["--max-time", "1"]).code, 28);
    assert_eq!(stall_req.tls_handshakes(), 1);

    let garbage = start(Misbehave::GarbagePlaintext);
    assert_eq!(
        run(&garbage, &[]).code,
        35,
        "garbage instead of a ServerHello is a TLS error"
    );

    let raw = start(Misbehave::RawResponse(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Raw: 1\r\n\r\nhello".to_vec(),
    ));
    let res = curl_response(&[
        "--cacert",
        s(pki.root_pem_path()),
        "--resolve",
        &raw.resolve_arg("faults.test"),
        &raw.url("faults.test", "/raw"),
    ]);
    assert_eq!(res.body_str(), "hello", "{}", res.output.stderr);
    assert_eq!(res.header("x-raw"), Some("1"));
    assert_eq!(
        raw.alpn_seen(),
        vec![Some("http/1.1".into())],
        "raw modes default to http/1.1"
    );
    assert_eq!(raw.requests()[0].path, "/raw");
    assert_eq!(
        raw.requests()[0].host.as_deref(),
        Some(format!("faults.test:{}", raw.port()).as_str())
    );
}

#[tokio::test]
async fn dropping_the_origin_closes_its_port() {
    let origin = TestOrigin::http().await;
    let addr = origin.addr();
    let held = TcpStream::connect(addr)
        .await
        .expect("connect while running");
    drop(origin);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "port still open after drop"
    );
    // The held connection was closed too: reading gives EOF or an error, not a hang.
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        held.readable().await.ok();
        held.try_read(&mut buf)
    })
    .await
    .expect("held connection closed on drop");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
