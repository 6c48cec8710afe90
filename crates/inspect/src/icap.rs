//! An ICAP client (RFC 3507) for malware scanning: RESPMOD for downloads, REQMOD for uploads.
//!
//! [`IcapClient`] sends one HTTP message (heads and the whole held body) to an ICAP service
//! such as c-icap's `virus_scan` in front of ClamAV and turns the answer into a [`Verdict`]:
//! `204 No Content` is clean; a `200` carrying an HTTP response is a block, named after the
//! threat the server reports (`X-Infection-Found`, `X-Violations-Found`); a `200` carrying the
//! message back unchanged is clean too (servers that do not use 204); anything else was
//! modified.
//!
//! What it does of the protocol:
//! - `OPTIONS` (§4.10) before the first request and again when `Options-TTL` runs out: the
//!   `Methods`, `Preview`, `Allow: 204`, `ISTag` and `Max-Connections` of the service.
//! - `Preview: n` (§4.5) when the service offers it: the first `n` bytes go first, ending in
//!   `0; ieof` if that was the whole body; the rest follows only after `100 Continue`, so a
//!   server that decides on the preview answers `204` without the rest being sent.
//! - `Allow: 204` (§4.6) on every request, and `Encapsulated` offsets (§4.4.1) both ways.
//! - Persistent connections (§4.1): a small pool of idle connections per client, capped by
//!   `Max-Connections`; a pooled connection the server closed while idle is noticed and the
//!   request retried once on a new one.
//! - One deadline per call, covering OPTIONS, connecting, sending and the answer.
//!
//! What it does not: TLS (`icaps`), streaming bodies through the server while the client
//! receives them, or returning a modified body (a [`Verdict::Modified`] only says so). Which
//! bodies to scan, and what the client sees, is the data path's decision.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

mod exchange;
mod message;
mod wire;

#[cfg(test)]
mod tests;

pub use message::{RequestHead, ResponseHead};

use exchange::Request;
use wire::{Conn, Fault};

/// ICAP's well-known port (RFC 3507 §4.2).
pub const DEFAULT_PORT: u16 = 1344;

/// Idle connections kept per client when the service does not say `Max-Connections`.
const MAX_IDLE: usize = 8;

/// Longest time OPTIONS are trusted, even when the service gives no `Options-TTL` (which
/// RFC 3507 §4.10.2 reads as "forever"): a restarted server may have changed them.
const MAX_OPTIONS_AGE: Duration = Duration::from_secs(3600);

/// A client for one ICAP service URL; cheap to clone (clones share the connection pool).
#[derive(Clone)]
pub struct IcapClient {
    inner: Arc<Inner>,
}

/// What the ICAP service said about a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found: `204 No Content`, or the message came back unchanged.
    Clean,
    /// The service replaced the message with an HTTP response (a block page).
    Blocked {
        /// The threat it named (`Eicar-Test-Signature`), or empty if it named none.
        signature: String,
        /// The status of the response it returned (c-icap's `virus_scan` sends 403).
        status: u16,
    },
    /// The service changed the message without naming a threat or returning an error page.
    /// Not clean: c-icap's `virus_scan` in its default streamed mode reports a virus found
    /// after it began answering this way (a cut body, no threat header), so treat it as a
    /// block. Run the service in `mode=simple` (as Debian's `avscan` alias does) to get
    /// [`Verdict::Blocked`] instead.
    Modified,
}

/// What an ICAP service announced in its OPTIONS answer (RFC 3507 §4.10.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// `Methods`: `RESPMOD`, `REQMOD`.
    pub methods: Vec<String>,
    /// `Preview`: how many body bytes the service wants first, if it takes previews.
    pub preview: Option<usize>,
    /// `Allow: 204`: whether it answers `204 No Content` outside previews.
    pub allow_204: bool,
    /// `ISTag`: the service's state (changes with its signatures), without quotes.
    pub istag: Option<String>,
    /// `Max-Connections`: how many connections it takes from one client.
    pub max_connections: Option<usize>,
    /// `Options-TTL`: how long these options hold.
    pub ttl: Option<Duration>,
    /// `Service`: a free-text description.
    pub service: Option<String>,
}

/// Why a call failed. Each variant has a [`code`](IcapError::code) for the access log.
#[derive(thiserror::Error, Debug)]
pub enum IcapError {
    /// No TCP connection could be made (refused, no route, name not found, connect timeout).
    #[error("cannot connect to ICAP server {server}: {source}")]
    Unreachable {
        /// `host:port`.
        server: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The exchange did not finish within the client's timeout.
    #[error("ICAP server {server} did not answer within {timeout:?}")]
    Timeout {
        /// `host:port`.
        server: String,
        /// The per-call timeout.
        timeout: Duration,
    },
    /// The connection broke mid-exchange (reset, or closed before the answer was complete).
    #[error("ICAP connection to {server} lost: {source}")]
    ConnectionLost {
        /// `host:port`.
        server: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server's answer is not ICAP as RFC 3507 defines it.
    #[error("ICAP protocol error from {server}: {message}")]
    Protocol {
        /// `host:port`.
        server: String,
        /// What was wrong.
        message: String,
    },
    /// A well-formed error answer (RFC 3507 §4.3.3): `404` unknown service, `500` scanner
    /// failure, `503` overloaded, ...
    #[error("ICAP server {server} answered {status} {reason}")]
    Status {
        /// `host:port`.
        server: String,
        /// The ICAP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
}

/// Why an ICAP URL is refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum IcapUrlError {
    /// Not a URL.
    #[error("invalid ICAP URL `{0}`: {1}")]
    Invalid(String, String),
    /// Another scheme than `icap`.
    #[error("ICAP URL `{0}` must start with icap:// (icaps:// is not supported)")]
    Scheme(String),
    /// No host.
    #[error("ICAP URL `{0}` has no host")]
    MissingHost(String),
    /// No service path (`icap://host/` names no service).
    #[error("ICAP URL `{0}` names no service (e.g. icap://127.0.0.1:1344/avscan)")]
    MissingService(String),
}

struct Inner {
    /// Host to connect to (IPv6 without brackets).
    host: String,
    port: u16,
    /// `host:port` for the `Host` header and messages.
    authority: String,
    /// The service URI for request lines: `icap://host:port/service`.
    uri: String,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    options: Mutex<Option<(ServerOptions, Instant)>>,
}

// === impl IcapClient ===

impl IcapClient {
    /// A client for `icap://host[:port]/service[?args]` (port 1344 by default) whose calls
    /// each finish within `timeout`. Connects lazily.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, IcapUrlError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| IcapUrlError::Invalid(url.into(), e.to_string()))?;
        if uri.scheme_str() != Some("icap") {
            return Err(IcapUrlError::Scheme(url.into()));
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| IcapUrlError::MissingHost(url.into()))?;
        let service = uri.path_and_query().map_or("", |p| p.as_str());
        if service.is_empty() || service == "/" {
            return Err(IcapUrlError::MissingService(url.into()));
        }
        let port = uri.port_u16().unwrap_or(DEFAULT_PORT);
        // `Uri::host` keeps an IPv6 address's brackets, as the authority needs them.
        let authority = format!("{host}:{port}");
        Ok(Self {
            inner: Arc::new(Inner {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                uri: format!("icap://{authority}{service}"),
                authority,
                timeout,
                idle: Mutex::new(Vec::new()),
                options: Mutex::new(None),
            }),
        })
    }

    /// The service URI used in request lines (`icap://host:port/service`).
    pub fn uri(&self) -> &str {
        &self.inner.uri
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The service's OPTIONS, from the cache or asked now. Also a readiness probe.
    pub async fn options(&self) -> Result<ServerOptions, IcapError> {
        let deadline = Instant::now() + self.inner.timeout;
        self.with_deadline(deadline, self.current_options(deadline))
            .await
    }

    /// Asks the service about a response (a download) before the client gets it: RESPMOD
    /// (RFC 3507 §4.9) with the request that fetched it, its head, and its whole body.
    pub async fn respmod<'a>(
        &self,
        request: impl Into<RequestHead<'a>>,
        response: impl Into<ResponseHead<'a>>,
        body: &[u8],
    ) -> Result<Verdict, IcapError> {
        let request = request.into();
        let response = response.into();
        self.modify(Request::respmod(&request, &response, body))
            .await
    }

    /// Asks the service about a request (an upload) before it goes upstream: REQMOD
    /// (RFC 3507 §4.8) with its head and whole body.
    pub async fn reqmod<'a>(
        &self,
        request: impl Into<RequestHead<'a>>,
        body: &[u8],
    ) -> Result<Verdict, IcapError> {
        let request = request.into();
        self.modify(Request::reqmod(&request, body)).await
    }

    async fn modify(&self, request: Request<'_>) -> Result<Verdict, IcapError> {
        let deadline = Instant::now() + self.inner.timeout;
        self.with_deadline(deadline, async {
            let options = self.current_options(deadline).await?;
            self.round_trip(&request, &options, deadline)
                .await
                .and_then(exchange::Outcome::into_verdict)
                .map_err(|f| self.error(f))
        })
        .await
    }

    /// Runs `work` until `deadline`; past it the work is dropped (with any connection it held,
    /// which is then in an unknown state) and the call fails with `Timeout`.
    async fn with_deadline<T>(
        &self,
        deadline: Instant,
        work: impl std::future::Future<Output = Result<T, IcapError>>,
    ) -> Result<T, IcapError> {
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| {
                Err(IcapError::Timeout {
                    server: self.inner.authority.clone(),
                    timeout: self.inner.timeout,
                })
            })
    }

    /// Cached OPTIONS while fresh, else asks the service and caches the answer.
    async fn current_options(&self, deadline: Instant) -> Result<ServerOptions, IcapError> {
        if let Some((options, fetched)) = self.lock_options().as_ref() {
            let ttl = options.ttl.unwrap_or(MAX_OPTIONS_AGE).min(MAX_OPTIONS_AGE);
            if fetched.elapsed() < ttl {
                return Ok(options.clone());
            }
        }
        let options = self
            .round_trip(&Request::Options, &ServerOptions::default(), deadline)
            .await
            .and_then(exchange::Outcome::into_options)
            .map_err(|f| self.error(f))?;
        tracing::debug!(
            icap.server = %self.inner.authority,
            icap.istag = ?options.istag,
            icap.preview = ?options.preview,
            "ICAP options"
        );
        *self.lock_options() = Some((options.clone(), Instant::now()));
        Ok(options)
    }

    /// One request on a pooled or new connection. A pooled connection that fails before any
    /// answer byte arrived was most likely closed by the server while idle (its keep-alive
    /// timeout): the request is sent again, once, on a new connection.
    async fn round_trip(
        &self,
        request: &Request<'_>,
        options: &ServerOptions,
        deadline: Instant,
    ) -> Result<exchange::Outcome, Fault> {
        let mut pooled = self.take_idle();
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => self.connect(deadline).await?,
            };
            conn.received = false;
            match exchange::run(&mut conn, request, options, &self.inner).await {
                Ok((outcome, keep_alive)) => {
                    if keep_alive {
                        self.put_idle(conn, options);
                    }
                    return Ok(outcome);
                }
                Err(Fault::Io(e)) if reused && !conn.received => {
                    tracing::debug!(icap.server = %self.inner.authority, error = %e, "stale ICAP connection, retrying");
                }
                Err(fault) => return Err(fault),
            }
        }
    }

    async fn connect(&self, deadline: Instant) -> Result<Conn, Fault> {
        let connect = Conn::connect(&self.inner.host, self.inner.port);
        tokio::time::timeout_at(deadline, connect)
            .await
            .unwrap_or_else(|_| {
                Err(Fault::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )))
            })
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = lock(&self.inner.idle);
        while let Some(conn) = idle.pop() {
            if conn.is_reusable() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: Conn, options: &ServerOptions) {
        let cap = options.max_connections.unwrap_or(MAX_IDLE).min(MAX_IDLE);
        let mut idle = lock(&self.inner.idle);
        if idle.len() < cap {
            idle.push(conn);
        }
    }

    fn lock_options(&self) -> std::sync::MutexGuard<'_, Option<(ServerOptions, Instant)>> {
        lock(&self.inner.options)
    }

    fn error(&self, fault: Fault) -> IcapError {
        let server = self.inner.authority.clone();
        match fault {
            Fault::Connect(source) => IcapError::Unreachable { server, source },
            Fault::Io(source) => IcapError::ConnectionLost { server, source },
            Fault::Protocol(message) => IcapError::Protocol { server, message },
            Fault::Status { status, reason } => IcapError::Status {
                server,
                status,
                reason,
            },
        }
    }
}

impl std::fmt::Debug for IcapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcapClient")
            .field("uri", &self.inner.uri)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (each critical section
/// is a single push, pop or assignment), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === impl IcapError ===

impl IcapError {
    /// A stable code for the access log and metric labels: `icap_unreachable` (no connection,
    /// or it was lost mid-exchange), `icap_timeout`, `icap_protocol` (a malformed answer) or
    /// `icap_server_error` (an ICAP error status such as 500 when the scanner is down).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } | Self::ConnectionLost { .. } => "icap_unreachable",
            Self::Timeout { .. } => "icap_timeout",
            Self::Protocol { .. } => "icap_protocol",
            Self::Status { .. } => "icap_server_error",
        }
    }
}

// === impl Verdict ===

impl Verdict {
    /// `clean`, `blocked` or `modified`, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Blocked { .. } => "blocked",
            Self::Modified => "modified",
        }
    }
}
