//! Raw TCP to the proxy port: arbitrary bytes in, whatever comes back out (for malformed
//! requests and smuggling probes), and CONNECT tunnels to run TLS over.

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Longest response head the helpers accept.
const MAX_HEAD: usize = 64 * 1024;

/// The proxy's reply to a CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectReply {
    /// Status code from the status line (0 if unparsable).
    pub status: u16,
    /// The whole response head, without the final blank line.
    pub head: String,
}

/// Connects to `proxy`, writes `bytes`, and reads until EOF, a reset, or `read_timeout` of
/// silence; returns everything read. Blocking (std), usable from any test.
pub fn raw_proxy_exchange(proxy: SocketAddr, bytes: &[u8], read_timeout: Duration) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(proxy)
        .unwrap_or_else(|e| panic!("connect to proxy {proxy}: {e}"));
    stream
        .set_read_timeout(Some(read_timeout))
        .expect("set read timeout");
    // The proxy may close before taking everything (that is often the point); keep reading.
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // WouldBlock/TimedOut = silence; ConnectionReset = the proxy reset us.
            Err(_) => break,
        }
    }
    out
}

/// Sends `CONNECT <target> HTTP/1.1` (with `Host: <target>` and `extra_headers`, each a full
/// `Name: value` line) and reads the reply head; the stream is positioned right after it.
pub async fn try_connect_tunnel(
    proxy: SocketAddr,
    target: &str,
    extra_headers: &[&str],
) -> io::Result<(ConnectReply, TcpStream)> {
    let mut stream = TcpStream::connect(proxy).await?;
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    for header in extra_headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let head = read_head(&mut stream).await?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((ConnectReply { status, head }, stream))
}

/// Opens a CONNECT tunnel to `target` (`host:port`) through `proxy`; panics unless the proxy
/// answers 200.
pub async fn connect_tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let (reply, stream) = try_connect_tunnel(proxy, target, &[])
        .await
        .unwrap_or_else(|e| panic!("CONNECT {target} via {proxy}: {e}"));
    assert_eq!(
        reply.status, 200,
        "CONNECT {target} via {proxy} was refused: {:?}",
        reply.head
    );
    stream
}

/// Reads an HTTP head up to and including the blank line, one byte at a time so that nothing
/// after it (tunnel bytes, a body) is consumed. Returns it without the final `\r\n\r\n`.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<String> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head over 64 KiB",
            ));
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "EOF inside a head after {:?}",
                    String::from_utf8_lossy(&head)
                ),
            ));
        }
        head.push(byte[0]);
    }
    head.truncate(head.len() - 4);
    Ok(String::from_utf8_lossy(&head).into_owned())
}
