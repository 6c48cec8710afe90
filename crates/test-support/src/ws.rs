//! Minimal WebSocket (RFC 6455) framing for the origin's `/ws` echo endpoint and for tests that
//! speak WebSocket through the gateway: opening handshake, frame encode/decode, masking.
//!
//! Enough for echo tests (text, binary, ping, close; any payload length up to
//! [`MAX_PAYLOAD`]); no extensions, no fragmentation reassembly, no UTF-8 validation.

use std::io;

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Frame opcode: continuation (RFC 6455 §5.2).
pub const OP_CONTINUATION: u8 = 0x0;
/// Frame opcode: text.
pub const OP_TEXT: u8 = 0x1;
/// Frame opcode: binary.
pub const OP_BINARY: u8 = 0x2;
/// Frame opcode: close.
pub const OP_CLOSE: u8 = 0x8;
/// Frame opcode: ping.
pub const OP_PING: u8 = 0x9;
/// Frame opcode: pong.
pub const OP_PONG: u8 = 0xA;
/// Frames with a longer payload are refused (tests never need more; garbage must not OOM us).
pub const MAX_PAYLOAD: u64 = 16 << 20;

/// The GUID every server appends to the client's key (RFC 6455 §1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The key our client sends; the value is arbitrary (only a nonce), fixed for reproducibility.
const CLIENT_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The masking key our client uses; RFC 6455 wants it random, which matters only against
/// cache-poisoning intermediaries, not in tests.
const CLIENT_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One decoded (and unmasked) frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode (`OP_*`).
    pub opcode: u8,
    /// Payload, unmasked.
    pub payload: Vec<u8>,
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(client_key.trim().as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Encodes one final frame; clients must pass a mask, servers must not (RFC 6455 §5.1).
pub fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | (opcode & 0x0f));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads one frame; `Ok(None)` on a clean EOF before its first byte.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 2];
    match r.read(&mut head[..1]).await? {
        0 => return Ok(None),
        _ => r.read_exact(&mut head[1..]).await?,
    };
    let len = match head[1] & 0x7f {
        126 => u64::from(r.read_u16().await?),
        127 => r.read_u64().await?,
        n => u64::from(n),
    };
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("websocket frame of {len} bytes is over the test limit"),
        ));
    }
    let mask = if head[1] & 0x80 != 0 {
        let mut key = [0u8; 4];
        r.read_exact(&mut key).await?;
        Some(key)
    } else {
        None
    };
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    if let Some(key) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= key[i % 4]);
    }
    Ok(Some(Frame {
        fin: head[0] & 0x80 != 0,
        opcode: head[0] & 0x0f,
        payload,
    }))
}

/// Client side of the opening handshake over an established stream (plain, or TLS through a
/// tunnel): sends the HTTP/1.1 Upgrade request and checks the 101 and its accept key.
/// Returns the response head on success.
pub async fn client_handshake<S>(stream: &mut S, host: &str, path: &str) -> io::Result<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {CLIENT_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let head = crate::clients::read_head(stream).await?;
    let status_ok = head.starts_with("HTTP/1.1 101");
    let want = accept_key(CLIENT_KEY).to_ascii_lowercase();
    let accept_ok = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .any(|(k, v)| {
            k.trim().eq_ignore_ascii_case("sec-websocket-accept")
                && v.trim().to_ascii_lowercase() == want
        });
    if status_ok && accept_ok {
        Ok(head)
    } else {
        Err(io::Error::other(format!(
            "websocket handshake refused or malformed: {head:?}"
        )))
    }
}

/// Sends one masked client frame.
pub async fn send_client_frame<S>(stream: &mut S, opcode: u8, payload: &[u8]) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    stream
        .write_all(&encode_frame(opcode, payload, Some(CLIENT_MASK)))
        .await?;
    stream.flush().await
}

/// Serves the echo protocol on an upgraded server-side stream until the peer closes:
/// text/binary echoed, ping answered with pong, close answered with close.
pub async fn serve_echo<S>(mut stream: S) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(frame) = read_frame(&mut stream).await? {
        let reply = match frame.opcode {
            OP_TEXT | OP_BINARY | OP_CONTINUATION => frame.opcode,
            OP_PING => OP_PONG,
            OP_CLOSE => {
                stream
                    .write_all(&encode_frame(OP_CLOSE, &frame.payload, None))
                    .await?;
                return stream.shutdown().await;
            }
            _ => continue,
        };
        stream
            .write_all(&encode_frame(reply, &frame.payload, None))
            .await?;
        stream.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn frames_round_trip_at_every_length_class() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for mask in [None, Some(CLIENT_MASK)] {
                let bytes = encode_frame(OP_BINARY, &payload, mask);
                let frame = read_frame(&mut bytes.as_slice())
                    .await
                    .expect("decode")
                    .expect("one frame");
                assert_eq!(frame.payload, payload, "len {len} mask {mask:?}");
                assert!(frame.fin);
                assert_eq!(frame.opcode, OP_BINARY);
            }
        }
    }
}
