//! ICAP on the wire (RFC 3507 §4): one buffered connection, message heads with folded header
//! lines, the `Encapsulated` header, and chunked bodies. No policy: the client decides what to
//! send and what an answer means.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest ICAP head (status line, headers and encapsulated HTTP heads) accepted.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// Largest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4 * 1024;

/// What went wrong on a connection, before the client names the server in an `IcapError`.
#[derive(Debug)]
pub(super) enum Fault {
    /// The TCP connection could not be made.
    Connect(io::Error),
    /// Reading or writing failed, or the server closed mid-message.
    Io(io::Error),
    /// The server's bytes are not the ICAP we expect.
    Protocol(String),
    /// A well-formed answer with an error status (RFC 3507 §4.3.3).
    Status { status: u16, reason: String },
}

/// One TCP connection to the server with its read buffer.
pub(super) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// Whether any byte arrived during the current exchange (a reused connection that fails
    /// before that was most likely closed by the server while idle, and is retried).
    pub(super) received: bool,
}

/// An ICAP response head: status and headers (names as sent, values unfolded with `\n`).
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub(super) status: u16,
    pub(super) reason: String,
    pub(super) headers: Headers,
}

/// Header fields in order; lookups ignore ASCII case.
#[derive(Debug, Default)]
pub(super) struct Headers(Vec<(String, String)>);

/// An entry of the `Encapsulated` header (RFC 3507 §4.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Section {
    ReqHdr,
    ResHdr,
    ReqBody,
    ResBody,
    OptBody,
    NullBody,
}

// === impl Conn ===

impl Conn {
    /// Connects, with Nagle off: requests go out as a few writes (head, body, terminator).
    pub(super) async fn connect(host: &str, port: u16) -> Result<Self, Fault> {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(Fault::Connect)?;
        stream.set_nodelay(true).map_err(Fault::Connect)?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            received: false,
        })
    }

    /// Whether an idle pooled connection can carry another request: nothing unread is
    /// buffered and the server has not closed it (a read would block).
    pub(super) fn is_reusable(&self) -> bool {
        let mut probe = [0u8; 1];
        self.buf.is_empty()
            && matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes the parts in order.
    pub(super) async fn write(&mut self, parts: &[&[u8]]) -> Result<(), Fault> {
        for part in parts {
            self.stream.write_all(part).await.map_err(Fault::Io)?;
        }
        Ok(())
    }

    /// Reads one message head, up to and including the empty line.
    pub(super) async fn read_head(&mut self) -> Result<Bytes, Fault> {
        let mut searched = 0;
        loop {
            if let Some(at) = memchr::memmem::find(&self.buf[searched..], b"\r\n\r\n") {
                return Ok(self.buf.split_to(searched + at + 4).freeze());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Fault::Protocol(format!(
                    "response head longer than {MAX_HEAD} bytes"
                )));
            }
            searched = self.buf.len().saturating_sub(3);
            self.fill().await?;
        }
    }

    /// Reads exactly `n` bytes.
    pub(super) async fn read_exact(&mut self, n: usize) -> Result<Bytes, Fault> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// Reads a chunked body to its end (RFC 3507 §4.4.1: encapsulated bodies are always
    /// chunked; chunk extensions and trailers are read and ignored). Returns the body, or
    /// `None` if it is longer than `limit` (it is still read, so the connection stays usable).
    pub(super) async fn read_chunked(&mut self, limit: usize) -> Result<Option<Vec<u8>>, Fault> {
        let mut body = Some(Vec::new());
        loop {
            let line = self.read_line().await?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            if body.as_ref().is_some_and(|b| b.len() + size > limit) {
                body = None;
            }
            let mut remaining = size;
            while remaining > 0 {
                if self.buf.is_empty() {
                    self.fill().await?;
                }
                let take = remaining.min(self.buf.len());
                if let Some(b) = body.as_mut() {
                    b.extend_from_slice(&self.buf[..take]);
                }
                self.buf.advance(take);
                remaining -= take;
            }
            if !self.read_line().await?.is_empty() {
                return Err(Fault::Protocol("chunk data longer than its size".into()));
            }
        }
    }

    /// Reads one CRLF-terminated line, without the CRLF.
    async fn read_line(&mut self) -> Result<Bytes, Fault> {
        loop {
            if let Some(at) = memchr::memmem::find(&self.buf, b"\r\n") {
                let line = self.buf.split_to(at + 2).freeze();
                return Ok(line.slice(..at));
            }
            if self.buf.len() > MAX_LINE {
                return Err(Fault::Protocol("chunk line too long".into()));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), Fault> {
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(Fault::Io)?;
        if n == 0 {
            return Err(Fault::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection mid-message",
            )));
        }
        self.received = true;
        Ok(())
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<usize, Fault> {
    let bad = || {
        Fault::Protocol(format!(
            "bad chunk size line {:?}",
            String::from_utf8_lossy(line)
        ))
    };
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits).map_err(|_| bad())?.trim();
    if digits.is_empty() || digits.len() > 15 {
        return Err(bad());
    }
    usize::from_str_radix(digits, 16).map_err(|_| bad())
}

// === message heads ===

/// Parses an ICAP response head: `ICAP/1.0 200 OK`, then header lines.
pub(super) fn parse_response_head(head: &[u8]) -> Result<ResponseHead, Fault> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(bad_status_line(status_line));
    };
    if !version.starts_with("ICAP/1.") || code.len() != 3 {
        return Err(bad_status_line(status_line));
    }
    let status = code.parse().map_err(|_| bad_status_line(status_line))?;
    let headers = parse_header_lines(lines).map_err(Fault::Protocol)?;
    Ok(ResponseHead {
        status,
        reason: parts.next().unwrap_or_default().trim().to_string(),
        headers,
    })
}

fn bad_status_line(line: &str) -> Fault {
    Fault::Protocol(format!("bad ICAP status line {:?}", truncate(line, 100)))
}

/// Header lines up to the first empty one. A line starting with a space or tab continues the
/// previous field (obsolete line folding, which c-icap uses for `X-Violations-Found`); the
/// pieces are kept apart with `\n` so multi-line values can be taken apart again.
pub(super) fn parse_header_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Headers, String> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = headers.last_mut() else {
                return Err("continuation line before any header".into());
            };
            value.push('\n');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {:?}", truncate(line, 100)));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Headers(headers))
}

/// The status of an encapsulated HTTP response head (`HTTP/1.1 403 Forbidden`).
pub(super) fn http_status(head: &[u8]) -> Result<u16, Fault> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") && code.len() == 3 => code
            .parse()
            .map_err(|_| Fault::Protocol(format!("bad encapsulated status line {line:?}"))),
        _ => Err(Fault::Protocol(format!(
            "bad encapsulated status line {:?}",
            truncate(&line, 100)
        ))),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

// === impl Headers ===

impl Headers {
    /// The first value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is present and its comma-separated list holds `token`.
    pub(super) fn has_token(&self, name: &str, token: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

// === Encapsulated ===

/// Parses `req-hdr=0, res-hdr=137, res-body=296` (RFC 3507 §4.4.1): offsets start at 0 and
/// increase; a body entry (or `null-body`) comes last and only last.
pub(super) fn parse_encapsulated(value: &str) -> Result<Vec<(Section, usize)>, Fault> {
    let bad = |why: &str| Fault::Protocol(format!("bad Encapsulated header {value:?}: {why}"));
    let mut out: Vec<(Section, usize)> = Vec::new();
    for entry in value.split(',') {
        let (name, offset) = entry.trim().split_once('=').ok_or_else(|| bad("no `=`"))?;
        let section = match name.trim().to_ascii_lowercase().as_str() {
            "req-hdr" => Section::ReqHdr,
            "res-hdr" => Section::ResHdr,
            "req-body" => Section::ReqBody,
            "res-body" => Section::ResBody,
            "opt-body" => Section::OptBody,
            "null-body" => Section::NullBody,
            _ => return Err(bad("unknown entry")),
        };
        let offset: usize = offset.trim().parse().map_err(|_| bad("bad offset"))?;
        if offset > MAX_HEAD {
            return Err(bad("offset too large"));
        }
        match out.last() {
            None if offset != 0 => return Err(bad("first offset is not 0")),
            Some((prev, _)) if prev.is_body() => return Err(bad("entry after the body")),
            Some((_, prev)) if offset <= *prev => return Err(bad("offsets do not increase")),
            _ => {}
        }
        out.push((section, offset));
    }
    Ok(out)
}

impl Section {
    /// Whether the entry is a body (or the `null-body` marker), which ends the list.
    pub(super) fn is_body(self) -> bool {
        matches!(
            self,
            Self::ReqBody | Self::ResBody | Self::OptBody | Self::NullBody
        )
    }
}

// === request encoding ===

/// The size line of a chunk (RFC 3507 §4.4.1: HTTP/1.1 chunked transfer-coding).
pub(super) fn chunk_size_line(len: usize) -> Vec<u8> {
    format!("{len:x}\r\n").into_bytes()
}

/// Ends the body. `ieof` says the preview held the whole body (RFC 3507 §4.5).
pub(super) fn last_chunk(ieof: bool) -> &'static [u8] {
    if ieof {
        b"0; ieof\r\n\r\n"
    } else {
        b"0\r\n\r\n"
    }
}
