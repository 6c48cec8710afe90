//! The misbehaving upstream modes (security matrix Appendix E, `fakeup.py`), written as raw
//! bytes on the socket because hyper, rightly, will not produce them.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{lock, Ctx, Misbehave, SeenRequest};

/// Body length announced by the mid-body modes (as `fakeup.py --body`).
const ANNOUNCED: usize = 1 << 20;
/// What `GarbagePlaintext` writes: an HTTP reply where a ServerHello is expected.
const GARBAGE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\r\nnot tls";

/// A stream the origin serves on, with access to the TCP socket under it (for RST and for a
/// FIN that bypasses TLS close_notify).
pub(super) trait Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The underlying TCP stream.
    fn tcp(&mut self) -> &mut TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&mut self) -> &mut TcpStream {
        self
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&mut self) -> &mut TcpStream {
        self.get_mut().0
    }
}

/// Modes that act before any TLS: returns the stream when the connection should go on to the
/// handshake, or `None` when the mode consumed it.
pub(super) async fn before_tls(mode: &Misbehave, mut tcp: TcpStream) -> Option<TcpStream> {
    match mode {
        Misbehave::StallAfterAccept => {
            // Hold the socket open, unread, until the origin is dropped.
            std::future::pending::<()>().await;
            None
        }
        Misbehave::StallInHandshake => {
            // Swallow whatever arrives (the ClientHello) and never answer.
            let mut sink = [0u8; 16 * 1024];
            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            None
        }
        Misbehave::GarbagePlaintext => {
            let _ = tcp.write_all(GARBAGE).await;
            let _ = tcp.shutdown().await;
            None
        }
        Misbehave::ResetMidBody => {
            // SO_LINGER 0: closing the socket later sends RST instead of FIN.
            let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            Some(tcp)
        }
        _ => Some(tcp),
    }
}

/// Modes that act once the (TLS) connection is up: read one request head, then misbehave.
pub(super) async fn after_tls(ctx: &Ctx, mut conn: impl Conn) {
    let Ok(head) = crate::clients::read_head(&mut conn).await else {
        return;
    };
    lock(&ctx.seen).requests.push(parse_head(&head));
    match &ctx.misbehave {
        Misbehave::StallAfterRequest => std::future::pending::<()>().await,
        Misbehave::ResetMidBody | Misbehave::CloseMidBody => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {ANNOUNCED}\r\n\r\n");
            let half = super::pattern(0, ANNOUNCED / 2);
            if conn.write_all(head.as_bytes()).await.is_err()
                || conn.write_all(&half).await.is_err()
                || conn.flush().await.is_err()
            {
                return;
            }
            // Let loopback deliver what was written: an RST discards unsent socket data, and
            // the mode is about a *partial* body, not an empty one.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if ctx.misbehave == Misbehave::CloseMidBody {
                let _ = conn.tcp().shutdown().await;
            }
            // Dropping closes; with SO_LINGER 0 (ResetMidBody) that is an RST.
        }
        Misbehave::RawResponse(bytes) => {
            let _ = conn.write_all(bytes).await;
            let _ = conn.shutdown().await;
        }
        _ => {}
    }
}

/// Parses an HTTP/1.x request head leniently (it is a record, not a validation).
fn parse_head(head: &str) -> SeenRequest {
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let method = start.next().unwrap_or_default().to_owned();
    let uri = start.next().unwrap_or_default().to_owned();
    let version = start.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let host = headers
        .iter()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.clone());
    let path = match uri.find("://") {
        Some(i) => uri[i + 3..]
            .find('/')
            .map_or_else(|| "/".to_owned(), |j| uri[i + 3 + j..].to_owned()),
        None => uri.clone(),
    };
    SeenRequest {
        method,
        path,
        uri,
        version,
        host,
        headers,
    }
}
