//! The proxy port: HTTP/1.1 with hyper, keep-alive, a 64 KiB head limit (hyper answers 431
//! beyond it and 400 to malformed heads), a head-read deadline, and the two request shapes of
//! an explicit proxy: `CONNECT host:port` (→ [`crate::tunnel`]) and absolute-form requests
//! (→ [`crate::forward`]).
//!
//! A client that opens with the HTTP/2 preface (prior knowledge, RFC 9113 §3.3) is served as
//! HTTP/2: each `CONNECT` stream is decided, dialled and tunnelled exactly like an HTTP/1.1
//! CONNECT, independently of the other streams (security matrix PE-15). Malformed CONNECT
//! streams (`:path` or `:scheme` present, `:authority` missing) are reset by the h2 layer with
//! PROTOCOL_ERROR, and extended CONNECT (`:protocol`, RFC 8441) is refused because
//! SETTINGS_ENABLE_CONNECT_PROTOCOL is never advertised.
//!
//! Every refusal carries `Connection: close`: after rejecting a CONNECT the gateway must not
//! parse whatever the client sent optimistically behind it (RFC 9931; security matrix PP-02).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sluice_policy::config::LogFail;
use sluice_policy::engine::{Action, Query};
use sluice_policy::name::Host;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::count::{Counted, Counters};
use crate::log::{timestamp, AccessRecord};
use crate::respond;
use crate::ConnCtx;

/// Response body of the proxy port: a relayed body, or one the gateway wrote.
pub type Body =
    Either<Incoming, Either<Full<Bytes>, Either<Empty<Bytes>, crate::inspect::Resumed>>>;

/// A byte stream from a client: a whole TCP connection (HTTP/1.1 CONNECT) or one HTTP/2
/// stream (h2 CONNECT).
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for T {}

/// The client side of a tunnel, counting its bytes.
pub type ClientIo = Box<dyn ClientStream>;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client opened with the HTTP/2 preface. Reads nothing: it peeks only until the
/// first bytes rule one protocol out (HTTP/1.1 methods never start with `PR`). `None` when the
/// client sent nothing (or only `P`) within the head deadline.
async fn speaks_h2(stream: &TcpStream, deadline: std::time::Duration) -> Option<bool> {
    let peek = async {
        let mut buf = [0u8; 24];
        loop {
            // A reset or error: the HTTP/1.1 path reads it again and logs it as such.
            let Ok(n) = stream.peek(&mut buf).await else {
                return Some(false);
            };
            if n == 0 {
                return Some(false);
            }
            let seen = &buf[..n];
            if !H2_PREFACE.starts_with(seen) {
                return Some(false);
            }
            if n >= 2 {
                return Some(true);
            }
            // One byte so far. The socket stays readable while it sits unread, so waiting
            // for readiness would spin: poll again shortly instead.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(deadline, peek).await.ok().flatten()
}

/// Serves one client connection on the proxy port.
pub async fn serve_client(stream: TcpStream, cx: Arc<ConnCtx>) {
    let counters = Arc::new(Counters::default());
    let timeouts = &cx.snap.config.proxy.timeouts;
    match speaks_h2(&stream, timeouts.header).await {
        Some(true) => return serve_h2(stream, cx, counters).await,
        Some(false) => {}
        None => {
            let error = Some("no request head within proxy.timeouts.header".to_string());
            return log_head_timeout(&cx, &counters, error);
        }
    }
    let io = TokioIo::new(Counted::new(stream, counters.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    let svc_cx = cx.clone();
    let svc_counters = counters.clone();
    let requests = Arc::new(AtomicU64::new(0));
    let seen = requests.clone();
    let service = service_fn(move |req| {
        seen.fetch_add(1, Ordering::Relaxed);
        handle(req, svc_cx.clone(), svc_counters.clone())
    });
    let result = builder.serve_connection(io, service).with_upgrades().await;
    let served = requests.load(Ordering::Relaxed);
    let logged = match &result {
        // A keep-alive connection that goes quiet after its requests is simply closed.
        Err(e) if e.is_timeout() && served > 0 => true,
        Err(e) => log_parse_error(&cx, &counters, e),
        Ok(()) => false,
    };
    // Every connection ends in one record, even one that never sent a request (DL-01).
    if !logged && served == 0 {
        let error = result.err().map(|e| e.to_string());
        log_idle(&cx, &counters, error);
    }
}

/// HTTP/2 with prior knowledge: every stream goes through the same `handle` as HTTP/1.1.
async fn serve_h2(stream: TcpStream, cx: Arc<ConnCtx>, counters: Arc<Counters>) {
    let io = TokioIo::new(Counted::new(stream, counters.clone()));
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(cx.snap.config.proxy.timeouts.idle / 2))
        .keep_alive_timeout(cx.snap.config.proxy.timeouts.header);
    let svc_cx = cx.clone();
    let svc_counters = counters.clone();
    let requests = Arc::new(AtomicU64::new(0));
    let seen = requests.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        seen.fetch_add(1, Ordering::Relaxed);
        let (cx, counters) = (svc_cx.clone(), svc_counters.clone());
        async move {
            // RFC 9113 §8.5: a CONNECT without :authority is malformed. The h2 layer already
            // resets :path/:scheme on CONNECT; this one it lets through.
            if req.method() == Method::CONNECT && req.uri().authority().is_none() {
                return Err(h2::Error::from(h2::Reason::PROTOCOL_ERROR));
            }
            handle(req, cx, counters)
                .await
                .map_err(|never| match never {})
        }
    });
    let result = builder.serve_connection(io, service).await;
    if requests.load(Ordering::Relaxed) == 0 {
        log_idle(&cx, &counters, result.err().map(|e| e.to_string()));
    }
}

/// The record of a connection that sent no request head before the deadline.
fn log_head_timeout(cx: &ConnCtx, counters: &Counters, error: Option<String>) {
    log_bad_head(cx, counters, 408, "request_head_timeout", error);
}

/// The record of a request head that never became a request (malformed, too large, late).
fn log_bad_head(
    cx: &ConnCtx,
    counters: &Counters,
    status: u16,
    reason: &str,
    error: Option<String>,
) {
    let (up, down) = counters.get();
    cx.rt.log.emit(AccessRecord {
        ts: timestamp(SystemTime::now()),
        conn_id: cx.id,
        client: cx.client.ip().to_string(),
        kind: "request",
        status: Some(status),
        decision: Some("block"),
        reason: Some(reason.into()),
        error,
        bytes_up: up,
        bytes_down: down,
        duration_ms: cx.started.elapsed().as_millis() as u64,
        ..Default::default()
    });
}

fn log_idle(cx: &ConnCtx, counters: &Counters, error: Option<String>) {
    let (up, down) = counters.get();
    cx.rt.log.emit(AccessRecord {
        ts: timestamp(SystemTime::now()),
        conn_id: cx.id,
        client: cx.client.ip().to_string(),
        kind: "connect",
        reason: Some("client_closed_without_request".into()),
        error,
        bytes_up: up,
        bytes_down: down,
        duration_ms: cx.started.elapsed().as_millis() as u64,
        ..Default::default()
    });
}

async fn handle(
    req: Request<Incoming>,
    cx: Arc<ConnCtx>,
    counters: Arc<Counters>,
) -> Result<Response<Body>, Infallible> {
    if cx.snap.config.log_fail == LogFail::Closed && cx.rt.log.failing() {
        return Ok(log_unavailable(&req, &cx));
    }
    let user = match &cx.snap.auth {
        None => None,
        Some(auth) => match auth.check(&req).await {
            Ok(user) => Some(user),
            Err(e) => return Ok(challenge(&req, &cx, auth, e)),
        },
    };
    if req.method() == Method::CONNECT {
        Ok(connect(req, cx, counters, user).await)
    } else {
        Ok(crate::forward::forward(req, cx, user).await)
    }
}

/// `503 log_unavailable`: `log.fail = "closed"` and the access log cannot be written, so no
/// new request is served unrecorded (security matrix DL-03). Requests and tunnels already
/// under way finish. Its own record is emitted too: writing it is what retries the sink.
fn log_unavailable(req: &Request<Incoming>, cx: &ConnCtx) -> Response<Body> {
    let rec = refused_record(req, cx);
    let detail = "The gateway cannot write its access log; requests are refused until it can.";
    refuse(cx, rec, 503, "log_unavailable", detail)
}

/// The record of a request refused before any decision: who asked for what.
fn refused_record(req: &Request<Incoming>, cx: &ConnCtx) -> AccessRecord {
    AccessRecord {
        ts: timestamp(SystemTime::now()),
        conn_id: cx.id,
        client: cx.client.ip().to_string(),
        kind: if req.method() == Method::CONNECT {
            "connect"
        } else {
            "request"
        },
        method: Some(req.method().to_string()),
        url: Some(req.uri().to_string()),
        ..Default::default()
    }
}

/// `407` with a `Proxy-Authenticate` challenge.
fn challenge(
    req: &Request<Incoming>,
    cx: &ConnCtx,
    auth: &crate::auth::Auth,
    e: crate::auth::AuthError,
) -> Response<Body> {
    let rec = refused_record(req, cx);
    let detail = "This proxy requires a user name and password.";
    let mut resp = refuse(cx, rec, 407, e.code(), detail);
    if let Ok(v) = HeaderValue::from_str(&auth.challenge()) {
        resp.headers_mut().insert(header::PROXY_AUTHENTICATE, v);
    }
    resp
}

/// Authority of a CONNECT request, validated (RFC 9110 §9.3.6: host and a non-zero port).
fn connect_target(req: &Request<Incoming>) -> Result<(Host, u16), &'static str> {
    crate::target::connect_target(req.uri())
}

async fn connect(
    req: Request<Incoming>,
    cx: Arc<ConnCtx>,
    counters: Arc<Counters>,
    user: Option<String>,
) -> Response<Body> {
    let started = SystemTime::now();
    let mut rec = AccessRecord {
        ts: timestamp(started),
        conn_id: cx.id,
        client: cx.client.ip().to_string(),
        kind: "connect",
        method: Some("CONNECT".into()),
        url: Some(req.uri().to_string()),
        user,
        ..Default::default()
    };
    let (host, port) = match connect_target(&req) {
        Ok(t) => t,
        Err(why) => return refuse(&cx, rec, 400, "bad_connect", why),
    };
    rec.host = Some(host.to_string());
    rec.port = Some(port);
    if !cx.snap.config.proxy.connect_ports.contains(&port) {
        let detail = format!("CONNECT to port {port} is not allowed (proxy.connect_ports)");
        return refuse(&cx, rec, 403, "port_not_allowed", &detail);
    }
    let q = Query {
        client: cx.client.ip(),
        user: rec.user.as_deref(),
        host: Some(&host),
        sni: None,
        ja4: None,
        now: unix_now(),
        explain: false,
    };
    let exceptions = cx.rt.exceptions.load();
    let decision = cx.snap.engine.decide(&q, &exceptions);
    rec.policy = Some(decision.policy.to_string());
    rec.app = decision.app.clone();
    rec.category = decision.category.clone();
    if decision.action == Action::Block {
        rec.rule = decision.rule.map(|r| cx.snap.engine.describe(r));
        let detail = block_detail(&host.to_string(), &decision);
        return refuse(&cx, rec, 403, decision.reason, &detail);
    }
    let dial_started = std::time::Instant::now();
    let dialed = cx.snap.dialer.dial(&host, port).await;
    cx.rt
        .metrics
        .upstream_connect_seconds
        .observe(dial_started.elapsed().as_secs_f64());
    let (upstream, addr) = match dialed {
        Ok(u) => u,
        Err(e) => {
            let status = e.status();
            return refuse(&cx, rec, status, e.code(), &e.to_string());
        }
    };
    rec.dest = Some(addr.to_string());
    let target = crate::tunnel::Target {
        host,
        port,
        addr,
        started,
        rec,
    };
    let h2 = req.version() == http::Version::HTTP_2;
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            // HTTP/2: the tunnel is this stream alone, counted on its own.
            Ok(upgraded) if h2 => {
                let counters = Arc::new(Counters::default());
                let client: ClientIo =
                    Box::new(Counted::new(TokioIo::new(upgraded), counters.clone()));
                crate::tunnel::run(client, Bytes::new(), upstream, target, cx, counters).await;
            }
            Ok(upgraded) => match upgraded.downcast::<TokioIo<Counted<TcpStream>>>() {
                Ok(parts) => {
                    let client: ClientIo = Box::new(parts.io.into_inner());
                    crate::tunnel::run(client, parts.read_buf, upstream, target, cx, counters)
                        .await;
                }
                Err(_) => {
                    let error = Some("unexpected upgrade I/O type".to_string());
                    crate::tunnel::finish(&cx, target, &counters, None, "internal_error", error);
                }
            },
            Err(e) => {
                let error = Some(e.to_string());
                crate::tunnel::finish(&cx, target, &counters, None, "client_aborted", error);
            }
        }
    });
    Response::new(Either::Right(Either::Right(Either::Left(Empty::new()))))
}

/// A refusal page on the proxy connection, logged, and the connection closed after it.
pub(crate) fn refuse(
    cx: &ConnCtx,
    mut rec: AccessRecord,
    status: u16,
    reason: &str,
    detail: &str,
) -> Response<Body> {
    rec.status = Some(status);
    rec.decision = Some("block");
    rec.reason = Some(reason.to_string());
    rec.error = (status >= 500 || status == 400).then(|| detail.to_string());
    rec.duration_ms = cx.started.elapsed().as_millis() as u64;
    cx.rt.log.emit(rec);
    let resp = respond::page(status, reason, respond::title(status), detail, cx.id);
    let (mut parts, body) = resp.into_parts();
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    if status == 407 {
        parts.status = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
    }
    Response::from_parts(parts, Either::Right(Either::Left(body)))
}

/// Logs a head the client never completed or that was malformed; whether it logged.
fn log_parse_error(cx: &ConnCtx, counters: &Counters, e: &hyper::Error) -> bool {
    if !e.is_parse() && !e.is_parse_too_large() && !e.is_timeout() {
        return false;
    }
    let (status, reason) = if e.is_parse_too_large() {
        (431, "request_head_too_large")
    } else if e.is_timeout() {
        (408, "request_head_timeout")
    } else {
        (400, "bad_request")
    };
    log_bad_head(cx, counters, status, reason, Some(e.to_string()));
    true
}

/// What a block page says: the host, its application and category, and the policy.
pub(crate) fn block_detail(host: &str, d: &sluice_policy::engine::Decision) -> String {
    let mut what = host.to_string();
    if let Some(app) = &d.app {
        what.push_str(&format!(" (application: {app})"));
    }
    if let Some(category) = &d.category {
        what.push_str(&format!(" (category: {category})"));
    }
    format!("Access to {what} is blocked by policy `{}`.", d.policy)
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
