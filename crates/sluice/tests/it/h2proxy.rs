//! HTTP/2 to the proxy port (security matrix PE-15): CONNECT streams get the same policy as
//! HTTP/1.1 CONNECT, per stream; malformed CONNECT streams are reset with PROTOCOL_ERROR; an
//! extended CONNECT is refused because the gateway never advertises it. A real h2 client (the
//! `h2` crate) for the well-formed streams, hand-written frames for the malformed ones (no
//! client library sends them).

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{World, LOG_WAIT};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn h2_connect_streams_get_the_http11_policy_each_on_its_own_pe15() {
    let w = World::new(
        &["ok.test", "blocked.test"],
        "[[policy]]\nname = \"default\"\nblock = { domains = [\"blocked.test\"] }\n",
    );
    let port = w.origin.port();
    let ca = w.gw.ca_pem_path().to_path_buf();
    rt().block_on(async {
        let tcp = TcpStream::connect(w.gw.proxy_addr()).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.unwrap();
        let connect = |host: &str| {
            http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(format!("{host}:{port}"))
                .body(())
                .unwrap()
        };
        // Two streams on one connection: the blocked one is refused, the other tunnels.
        let (blocked, _) = client.send_request(connect("blocked.test"), false).unwrap();
        let mut client = client.ready().await.unwrap();
        let (ok, send) = client.send_request(connect("ok.test"), false).unwrap();
        let blocked = blocked.await.unwrap();
        assert_eq!(blocked.status(), 403);
        let ok = ok.await.unwrap();
        assert_eq!(ok.status(), 200);
        // TLS through the stream, verified against the gateway CA, and one request.
        let stream = H2Stream::new(send, ok.into_body());
        let opts = sluice_test_support::clients::TlsClientOptions::new("ok.test")
            .root(&ca)
            .alpn(&["http/1.1"]);
        let tls = sluice_test_support::clients::tls_over_tunnel_with(stream, &opts)
            .await
            .expect("TLS over an h2 CONNECT stream");
        let res = sluice_test_support::clients::http_get(tls, "ok.test", "/")
            .await
            .unwrap();
        assert_eq!(res.status, 200);
        assert!(String::from_utf8_lossy(&res.body).contains("hello from"));
    });
    let blocked = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "blocked.test",
        LOG_WAIT,
    );
    assert_eq!(
        (&blocked["decision"], &blocked["reason"], &blocked["status"]),
        (&"block".into(), &"blocked:domain".into(), &403.into())
    );
    let ok = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "ok.test",
        LOG_WAIT,
    );
    assert_eq!(ok["decision"], "decrypt", "{ok}");
    assert_eq!(ok["sni"], "ok.test");
    assert!(ok["bytes_up"].as_u64().unwrap() > 0, "{ok}");
}

// === hand-written frames ===

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// HPACK "literal header field without indexing", name from the static table (RFC 7541 §6.2.2).
fn literal(name_index: u8, value: &str) -> Vec<u8> {
    let mut out = vec![name_index];
    out.push(value.len() as u8);
    out.extend(value.as_bytes());
    out
}

/// HPACK literal with a literal name.
fn literal_name(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00, name.len() as u8];
    out.extend(name.as_bytes());
    out.push(value.len() as u8);
    out.extend(value.as_bytes());
    out
}

/// Static table indexes: 1 `:authority`, 2 `:method`, 4 `:path` (value `/`), 7 `:scheme https`.
fn method_connect() -> Vec<u8> {
    literal(2, "CONNECT")
}

/// Sends `header_blocks` as HEADERS on streams 1, 3, 5, ... and returns, per stream, the
/// RST_STREAM error code the gateway answered with (or a GOAWAY code for every stream when it
/// gave up on the whole connection).
async fn reset_codes(w: &World, header_blocks: &[Vec<u8>]) -> Vec<Option<u32>> {
    let mut s = TcpStream::connect(w.gw.proxy_addr()).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for (i, block) in header_blocks.iter().enumerate() {
        out.extend(frame(HEADERS, END_HEADERS, 1 + 2 * i as u32, block));
    }
    s.write_all(&out).await.unwrap();
    let mut codes = vec![None; header_blocks.len()];
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            if kind == RST_STREAM && stream % 2 == 1 {
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                codes[(stream as usize - 1) / 2] = Some(code);
            }
            if kind == GOAWAY {
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                for c in codes.iter_mut().filter(|c| c.is_none()) {
                    *c = Some(code);
                }
            }
        }
        if codes.iter().all(Option::is_some) {
            return codes;
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return codes,
        }
    }
}

#[test]
fn malformed_and_extended_h2_connect_are_protocol_errors_pe15() {
    let w = World::new(&["ok.test"], "");
    let authority = format!("ok.test:{}", w.origin.port());
    let with_path = [method_connect(), literal(1, &authority), vec![0x84]].concat();
    let without_authority = method_connect();
    let extended = [
        method_connect(),
        literal(1, &authority),
        vec![0x84, 0x87],
        literal_name(":protocol", "websocket"),
    ]
    .concat();
    let codes = rt().block_on(reset_codes(&w, &[with_path, without_authority, extended]));
    assert_eq!(codes, vec![Some(PROTOCOL_ERROR); 3], "{codes:?}");
    assert!(w.origin.connections() == 0, "nothing was dialled");
    // The proxy still serves.
    let res = sluice_test_support::curl_response_via(
        &w.gw,
        &w.url("ok.test", "/"),
        &["--cacert", w.gw.ca_pem_path().to_str().unwrap()],
    );
    assert_eq!(res.http_code, 200);
}

// === an h2 stream as AsyncRead + AsyncWrite ===

/// One h2 stream as a byte stream, for running TLS over a CONNECT tunnel.
struct H2Stream {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    pending: Bytes,
}

impl H2Stream {
    fn new(send: h2::SendStream<Bytes>, recv: h2::RecvStream) -> Self {
        Self {
            send,
            recv,
            pending: Bytes::new(),
        }
    }
}

impl tokio::io::AsyncRead for H2Stream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl tokio::io::AsyncWrite for H2Stream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        self.send.reserve_capacity(data.len());
        match self.send.poll_capacity(cx) {
            Poll::Ready(Some(Ok(n))) => {
                let n = n.min(data.len());
                self.send
                    .send_data(Bytes::copy_from_slice(&data[..n]), false)
                    .map_err(std::io::Error::other)?;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(std::io::Error::other(e))),
            Poll::Ready(None) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        std::task::Poll::Ready(Ok(()))
    }
}
