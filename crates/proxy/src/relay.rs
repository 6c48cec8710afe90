//! The bypass relay: bytes copied both ways untouched until both sides have closed, with
//! half-close propagated (a FIN from one side becomes a shutdown of the other side's write
//! half) and one idle deadline shared by both directions, so a long download with a silent
//! upload direction is not cut.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Per-direction copy buffer to start with. 16 KiB matches a TLS record; two per tunnel keep
/// an idle tunnel's footprint small.
const BUF: usize = 16 * 1024;
/// A direction that keeps filling its buffer (a bulk transfer) grows it to this, so a large
/// download takes a quarter of the reads and wake-ups.
const BULK_BUF: usize = 64 * 1024;

/// Outcome of a relay.
#[derive(Debug, Default)]
pub struct Relayed {
    /// Bytes client → upstream.
    pub up: u64,
    /// Bytes upstream → client.
    pub down: u64,
    /// The first error, if any (resets, idle timeout).
    pub error: Option<String>,
}

/// Copies both ways until both directions are done or idle for `idle`.
pub async fn relay<C, U>(client: C, upstream: U, idle: Duration) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (up, down) = tokio::join!(
        copy(&mut cr, &mut uw, &last, start, idle),
        copy(&mut ur, &mut cw, &last, start, idle),
    );
    Relayed {
        up: up.0,
        down: down.0,
        error: up.1.or(down.1),
    }
}

async fn copy<R, W>(
    r: &mut R,
    w: &mut W,
    last: &AtomicU64,
    start: Instant,
    idle: Duration,
) -> (u64, Option<String>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = match tokio::time::timeout(idle, r.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                let _ = w.shutdown().await;
                return (total, Some(e.to_string()));
            }
            Err(_) => {
                let since = start.elapsed().as_millis() as u64 - last.load(Ordering::Relaxed);
                if since < idle.as_millis() as u64 {
                    continue;
                }
                let _ = w.shutdown().await;
                return (total, Some("idle timeout".into()));
            }
        };
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        let full = n == buf.len();
        if let Err(e) = w.write_all(&buf[..n]).await {
            return (total, Some(e.to_string()));
        }
        total += n as u64;
        if full && buf.len() < BULK_BUF {
            buf.resize(BULK_BUF, 0);
        }
    }
    let _ = w.shutdown().await;
    (total, None)
}
