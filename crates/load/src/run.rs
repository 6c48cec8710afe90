//! The load itself: workers that send `GET` requests in one of three modes until the budget
//! (a deadline or a request count) is spent, each recording into its own [`Stats`].
//!
//! - `keepalive`: each of `c` workers opens one HTTP/1.1 connection and loops requests on it
//!   (reconnecting if it breaks). Latency is request start → last body byte.
//! - `newconn`: every request opens its own connection (TCP + CONNECT + TLS + 1 request with
//!   `Connection: close`). Latency covers all of it.
//! - `h2`: `c` connections negotiated as h2, each with `streams` concurrent request loops.
//!
//! A request succeeds only when the status is 200 and its body was read to the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context as _};
use bytes::Bytes;
use clap::ValueEnum;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinSet;

use crate::client::Dialer;
use crate::stats::{self, Report, Stats};

/// How requests are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// One HTTP/1.1 connection per worker, many requests on it.
    Keepalive,
    /// A new connection (CONNECT + TLS handshake) for every request.
    Newconn,
    /// HTTP/2: `-c` connections × `--streams` concurrent streams.
    H2,
}

/// When to stop: a deadline, a number of requests, or both.
pub(crate) struct Budget {
    deadline: Option<Instant>,
    remaining: Option<AtomicU64>,
}

/// Everything the workers share.
pub(crate) struct Plan {
    /// Opens connections (through the proxy or direct).
    pub(crate) dialer: Dialer,
    /// How requests are sent.
    pub(crate) mode: Mode,
    /// Workers (`keepalive`, `newconn`) or connections (`h2`).
    pub(crate) connections: usize,
    /// Concurrent streams per connection (`h2` only).
    pub(crate) streams: usize,
    /// When to stop.
    pub(crate) budget: Budget,
    /// Origin-form URI (`/1k`) for HTTP/1.1.
    pub(crate) path: Uri,
    /// Absolute URI (`https://bench.test:8443/1k`) for h2's `:scheme` and `:authority`.
    pub(crate) absolute: Uri,
    /// `Host` header value for HTTP/1.1.
    pub(crate) host_header: HeaderValue,
    /// Errors printed so far (only the first few are, so a broken run does not flood stderr).
    pub(crate) errors_printed: AtomicU64,
    /// Each worker's interval between request starts (`--rate`), if paced.
    pub(crate) pace: Option<std::time::Duration>,
}

type H1Sender = http1::SendRequest<Empty<Bytes>>;
type H2Sender = http2::SendRequest<Empty<Bytes>>;

const MAX_PRINTED_ERRORS: u64 = 5;

// === impl Budget ===

impl Budget {
    /// Stops at `deadline`, after `requests` requests, or at whichever comes first.
    pub(crate) fn new(deadline: Option<Instant>, requests: Option<u64>) -> Self {
        Self {
            deadline,
            remaining: requests.map(AtomicU64::new),
        }
    }

    /// Claims one request; false once the budget is spent.
    fn take(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match &self.remaining {
            Some(r) => r
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                .is_ok(),
            None => true,
        }
    }

    fn spent(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
            || self
                .remaining
                .as_ref()
                .is_some_and(|r| r.load(Ordering::Relaxed) == 0)
    }
}

// === impl Plan ===

impl Plan {
    /// Runs every worker to the end of the budget and reports what they counted.
    pub(crate) async fn run(self) -> anyhow::Result<Report> {
        let plan = Arc::new(self);
        let start = Instant::now();
        let cpu_start = stats::process_cpu_time();
        let mut set = JoinSet::new();
        for _ in 0..plan.connections {
            let p = plan.clone();
            match plan.mode {
                Mode::Keepalive => set.spawn(keepalive_worker(p)),
                Mode::Newconn => set.spawn(newconn_worker(p)),
                Mode::H2 => set.spawn(h2_worker(p)),
            };
        }
        let mut stats = Stats::new();
        while let Some(r) = set.join_next().await {
            stats.merge(&r.context("worker panicked")?);
        }
        let concurrency = match plan.mode {
            Mode::H2 => plan.connections * plan.streams,
            Mode::Keepalive | Mode::Newconn => plan.connections,
        };
        Ok(Report {
            mode: match plan.mode {
                Mode::Keepalive => "keepalive",
                Mode::Newconn => "newconn",
                Mode::H2 => "h2",
            },
            via: plan.dialer.via(),
            concurrency,
            elapsed: start.elapsed(),
            cpu: stats::process_cpu_time()
                .zip(cpu_start)
                .map(|(end, begin)| end.saturating_sub(begin)),
            stats,
        })
    }

    fn h1_request(&self, close: bool) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = self.path.clone();
        let headers = req.headers_mut();
        headers.insert(http::header::HOST, self.host_header.clone());
        if close {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        req
    }

    fn h2_request(&self) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = self.absolute.clone();
        *req.version_mut() = http::Version::HTTP_2;
        req
    }

    fn failed(&self, stats: &mut Stats, e: &anyhow::Error) {
        stats.errors += 1;
        if self.errors_printed.fetch_add(1, Ordering::Relaxed) < MAX_PRINTED_ERRORS {
            eprintln!("sluice-load: error: {e:#}");
        }
    }

    async fn open_h1(&self) -> anyhow::Result<H1Sender> {
        let tls = self.dialer.connect().await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP/1.1 handshake")?;
        // The connection task ends when the server closes or every sender is dropped.
        tokio::spawn(conn);
        Ok(sender)
    }

    async fn open_h2(&self) -> anyhow::Result<H2Sender> {
        let tls = self.dialer.connect().await?;
        let alpn = tls.get_ref().1.alpn_protocol();
        ensure!(
            alpn == Some(b"h2".as_slice()),
            "server did not negotiate h2 (ALPN {:?})",
            alpn.map(String::from_utf8_lossy)
        );
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .context("h2 handshake")?;
        tokio::spawn(conn);
        Ok(sender)
    }
}

/// One connection, requests in a loop; a broken connection is counted and replaced.
async fn keepalive_worker(plan: Arc<Plan>) -> Stats {
    let mut stats = Stats::new();
    let mut conn: Option<H1Sender> = None;
    let mut ticks = schedule(&plan);
    while plan.budget.take() {
        if let Some(t) = ticks.as_mut() {
            t.tick().await;
        }
        let sender = match conn.as_mut() {
            Some(s) if !s.is_closed() => s,
            _ => match plan.open_h1().await {
                Ok(s) => conn.insert(s),
                Err(e) => {
                    plan.failed(&mut stats, &e);
                    continue;
                }
            },
        };
        let start = Instant::now();
        match h1_exchange(sender, plan.h1_request(false)).await {
            Ok(bytes) => record(&mut stats, start, bytes),
            Err(e) => {
                plan.failed(&mut stats, &e);
                conn = None;
            }
        }
    }
    stats
}

/// The schedule of a paced worker: ticks at `pace`, late ticks delayed rather than bunched.
fn schedule(plan: &Plan) -> Option<tokio::time::Interval> {
    plan.pace.map(|pace| {
        let mut ticks = tokio::time::interval(pace);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    })
}

/// A fresh connection for every request.
async fn newconn_worker(plan: Arc<Plan>) -> Stats {
    let mut stats = Stats::new();
    let mut ticks = schedule(&plan);
    while plan.budget.take() {
        if let Some(t) = ticks.as_mut() {
            t.tick().await;
        }
        let start = Instant::now();
        let result = async {
            let mut sender = plan.open_h1().await?;
            h1_exchange(&mut sender, plan.h1_request(true)).await
        }
        .await;
        match result {
            Ok(bytes) => record(&mut stats, start, bytes),
            Err(e) => plan.failed(&mut stats, &e),
        }
    }
    stats
}

/// One h2 connection driven by `streams` request loops; reopened if it breaks.
async fn h2_worker(plan: Arc<Plan>) -> Stats {
    let mut stats = Stats::new();
    while !plan.budget.spent() {
        let sender = match plan.open_h2().await {
            Ok(s) => s,
            Err(e) => {
                // A failed connect spends one request, so `-n` runs end even if nothing works.
                if plan.budget.take() {
                    plan.failed(&mut stats, &e);
                }
                continue;
            }
        };
        let mut streams = JoinSet::new();
        for _ in 0..plan.streams {
            streams.spawn(h2_stream(plan.clone(), sender.clone()));
        }
        while let Some(r) = streams.join_next().await {
            match r {
                Ok(s) => stats.merge(&s),
                Err(e) => plan.failed(&mut stats, &anyhow::Error::new(e)),
            }
        }
    }
    stats
}

/// Requests in a loop on a shared h2 connection, until the budget is spent or it closes.
async fn h2_stream(plan: Arc<Plan>, mut sender: H2Sender) -> Stats {
    let mut stats = Stats::new();
    while plan.budget.take() {
        let start = Instant::now();
        let result = async {
            sender.ready().await.context("h2 connection")?;
            let resp = sender
                .send_request(plan.h2_request())
                .await
                .context("h2 request")?;
            read_ok_body(resp).await
        }
        .await;
        match result {
            Ok(bytes) => record(&mut stats, start, bytes),
            Err(e) => {
                plan.failed(&mut stats, &e);
                if sender.is_closed() {
                    break;
                }
            }
        }
    }
    stats
}

async fn h1_exchange(sender: &mut H1Sender, req: Request<Empty<Bytes>>) -> anyhow::Result<u64> {
    sender.ready().await.context("HTTP/1.1 connection")?;
    let resp = sender.send_request(req).await.context("HTTP/1.1 request")?;
    read_ok_body(resp).await
}

/// Checks the status is 200 and reads the body to the end, counting its bytes.
async fn read_ok_body(resp: http::Response<hyper::body::Incoming>) -> anyhow::Result<u64> {
    ensure!(
        resp.status() == StatusCode::OK,
        "status {} (want 200)",
        resp.status()
    );
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.context("read body")?.data_ref() {
            bytes += data.len() as u64;
        }
    }
    Ok(bytes)
}

fn record(stats: &mut Stats, start: Instant, bytes: u64) {
    stats.latency.record(start.elapsed());
    stats.requests += 1;
    stats.body_bytes += bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_by_count() {
        let b = Budget::new(None, Some(2));
        assert!(!b.spent());
        assert!(b.take() && b.take());
        assert!(!b.take());
        assert!(b.spent());
    }

    #[test]
    fn budget_by_deadline() {
        let b = Budget::new(Some(Instant::now()), None);
        assert!(!b.take());
        assert!(b.spent());
        assert!(Budget::new(None, None).take());
    }
}
