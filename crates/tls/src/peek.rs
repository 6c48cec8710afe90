//! Reading the ClientHello off a tunnel without consuming it: bytes are buffered until the
//! pure parser (`hello`) has a complete ClientHello (or knows it never will), and the buffer is
//! then replayed — forwarded verbatim to the origin on bypass, or fed to the local TLS server on
//! decrypt through [`PrefixedIo`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::hello::{parse_client_hello, ClientHello, HelloError};

/// How reading the ClientHello ended, when it did not produce one.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    /// The bytes are not (or can never become) a valid ClientHello.
    #[error("{0}")]
    Hello(#[from] HelloError),
    /// The client closed before sending a complete ClientHello.
    #[error("client closed before completing its ClientHello")]
    Eof,
    /// Reading failed.
    #[error("reading the ClientHello: {0}")]
    Io(#[from] io::Error),
}

impl PeekError {
    /// Stable reason code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Hello(e) => e.code(),
            Self::Eof => "client_closed_before_hello",
            Self::Io(_) => "client_io_error",
        }
    }
}

/// Reads from `io` into `buf` until `buf` holds a complete ClientHello. `buf` may already hold
/// bytes read earlier (e.g. by the HTTP layer). On return `buf` holds every byte read, which
/// the caller must replay. The caller applies the deadline.
pub async fn read_client_hello<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<ClientHello, PeekError> {
    loop {
        if !buf.is_empty() {
            if let Some(hello) = parse_client_hello(buf, max_len)? {
                return Ok(hello);
            }
        }
        buf.reserve(4096);
        if io.read_buf(buf).await? == 0 {
            return Err(PeekError::Eof);
        }
    }
}

/// An I/O object that yields `prefix` before reading from `inner`; writes go straight through.
pub struct PrefixedIo<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> PrefixedIo<T> {
    /// Wraps `inner`, replaying `prefix` first.
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Self { prefix, inner }
    }

    /// The wrapped I/O object (any unread prefix is lost).
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// The wrapped I/O object.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PrefixedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PrefixedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
