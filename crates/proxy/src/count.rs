//! An I/O wrapper counting bytes read and written, for the access log's `bytes_up` and
//! `bytes_down` on every path (bypass, decrypt, refused).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared byte counters of one connection.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes read from the wrapped stream.
    pub read: AtomicU64,
    /// Bytes written to it.
    pub written: AtomicU64,
}

impl Counters {
    /// (read, written).
    pub fn get(&self) -> (u64, u64) {
        (
            self.read.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
        )
    }
}

/// Counts what passes through `inner`.
pub struct Counted<T> {
    inner: T,
    counters: Arc<Counters>,
}

impl<T> Counted<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.counters.read.fetch_add(n as u64, Ordering::Relaxed);
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A body that counts the data bytes passing through it.
pub struct CountingBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> CountingBody<B> {
    /// Wraps `inner`, adding to `count`.
    pub fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Self { inner, count }
    }
}

impl<B: hyper::body::Body<Data = bytes::Bytes> + Unpin> hyper::body::Body for CountingBody<B> {
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that writes its request's access-log record once it has been sent — or
/// dropped, when the client went away first — so the record carries the bytes actually
/// transferred and the full duration.
pub struct LoggedBody<B> {
    inner: B,
    record: Option<crate::log::AccessRecord>,
    log: crate::log::AccessLog,
    started: std::time::Instant,
    up: Arc<AtomicU64>,
    down: u64,
}

impl<B> LoggedBody<B> {
    /// Wraps `inner`; `up` counts the request body's bytes.
    pub fn new(
        inner: B,
        record: crate::log::AccessRecord,
        log: crate::log::AccessLog,
        started: std::time::Instant,
        up: Arc<AtomicU64>,
    ) -> Self {
        Self {
            inner,
            record: Some(record),
            log,
            started,
            up,
            down: 0,
        }
    }

    fn emit(&mut self, complete: bool) {
        if let Some(mut rec) = self.record.take() {
            rec.bytes_up = self.up.load(Ordering::Relaxed);
            rec.bytes_down = self.down;
            rec.duration_ms = self.started.elapsed().as_millis() as u64;
            if !complete && rec.error.is_none() {
                rec.error = Some("client_aborted: response not fully sent".into());
            }
            self.log.emit(rec);
        }
    }
}

impl<B: hyper::body::Body<Data = bytes::Bytes> + Unpin> hyper::body::Body for LoggedBody<B> {
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.down += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.emit(true);
                }
            }
            Poll::Ready(None) => self.emit(true),
            Poll::Ready(Some(Err(_))) => {
                if let Some(rec) = self.record.as_mut() {
                    rec.error = Some("upstream_aborted: response body cut short".into());
                }
                self.emit(false);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        let done = self.record.is_none();
        if !done {
            // Bodies that are empty may never be polled; they were complete.
            let complete = self.down == 0;
            self.emit(complete);
        }
    }
}
