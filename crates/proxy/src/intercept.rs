//! Decryption: verify the origin first, then mint a leaf and finish the client's handshake
//! with the ALPN the origin chose, then serve HTTP (hyper, h1 or h2) and forward each request
//! over the verified upstream connection.
//!
//! The order matters for security: the client is never shown a trusted certificate for an
//! origin that failed validation. When validation fails the client gets a gateway error page
//! (under a minted leaf — it is the gateway speaking, not the origin) and nothing is forwarded
//! (security matrix UC-*, CK-04).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::server::Acceptor;
use sluice_policy::name::Host;
use sluice_tls::hello::ClientHello;
use sluice_tls::mint::LeafName;
use sluice_tls::peek::PrefixedIo;
use sluice_tls::verify::{
    cert_failure, cert_summary, describe, upstream_error_code, AlpnOffer, CertSummary,
};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use crate::count::{Counters, CountingBody, LoggedBody};
use crate::front::ClientIo;
use crate::inspect::Stop;
use crate::log::{timestamp, AccessRecord, UpstreamCert};
use crate::pinning;
use crate::respond;
use crate::tunnel::{finish, Target};
use crate::ConnCtx;

type ClientTls = tokio_rustls::server::TlsStream<PrefixedIo<ClientIo>>;
type UpstreamTlsStream = tokio_rustls::client::TlsStream<TcpStream>;
/// Body of a decrypted or forwarded message: relayed, held (scanned), or resumed after a peek.
pub(crate) type InnerBody = Either<Incoming, Either<Full<Bytes>, crate::inspect::Resumed>>;
/// A request body on its way upstream, counted for the access log.
type UpBody = CountingBody<InnerBody>;

/// Intercepts one tunnel.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: ClientIo,
    hello_bytes: Bytes,
    upstream: TcpStream,
    name: Host,
    hello: &ClientHello,
    mut t: Target,
    reason: &'static str,
    cx: Arc<ConnCtx>,
    counters: Arc<Counters>,
) {
    let offer = AlpnOffer::from_client(&hello.alpn);
    let mut seen = None;
    let up = connect_upstream(&cx, upstream, &name, offer, &mut seen).await;
    let up = match up {
        Ok(up) => up,
        Err(code) => {
            t.rec.upstream_cert = seen.map(upstream_cert);
            // Serve the failure as a page from the gateway; HTTP/1.1 unless the client only speaks h2.
            let alpn = if offer == AlpnOffer::H2 {
                Some(b"h2".to_vec())
            } else {
                None
            };
            let served = serve_error(client, hello_bytes, &name, alpn, &cx, code).await;
            return finish(&cx, t, &counters, Some("block"), code, served.err());
        }
    };
    let (_, conn) = up.get_ref();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    t.rec.tls_version = conn
        .protocol_version()
        .map(|v| format!("{v:?}").replace('_', "."));
    t.rec.upstream_cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| cert_summary(c.as_ref()))
        .map(upstream_cert);
    t.rec.reason = Some(reason.into());
    let mut tls = match accept_client(client, hello_bytes, &name, alpn.clone(), &cx).await {
        Ok(tls) => tls,
        Err(e) => {
            if let Some(signal) = pinning::alert_signal(&e) {
                pinning::observe(&cx.rt, &t.rec, signal);
            }
            return finish(&cx, t, &counters, Some("decrypt"), reason, Some(e));
        }
    };
    let quiet = cx.snap.config.pinning.quiet_window;
    let first = match tokio::time::timeout(quiet, first_data(&mut tls)).await {
        Ok(Some(bytes)) => {
            let host = t
                .rec
                .sni
                .as_deref()
                .or(t.rec.host.as_deref())
                .unwrap_or_default();
            let ja4 = t.rec.ja4.as_deref().unwrap_or_default();
            cx.rt.activity.mark(cx.client.ip(), host, ja4);
            bytes
        }
        Ok(None) => {
            pinning::closed_after_handshake(cx.rt.clone(), &t.rec, cx.client.ip());
            let error = Some(pinning::CLOSED_AFTER_HANDSHAKE.to_string());
            return finish(&cx, t, &counters, Some("decrypt"), reason, error);
        }
        // Connected and quiet past the window: not a pinning signal; serve as usual.
        Err(_) => Bytes::new(),
    };
    let tls = PrefixedIo::new(first, tls);
    t.rec.alpn = alpn
        .as_deref()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    t.rec.reason = Some(reason.into());
    let h2 = alpn.as_deref() == Some(b"h2");
    let result = serve_decrypted(tls, up, h2, &name, &t, &cx).await;
    finish(&cx, t, &counters, Some("decrypt"), reason, result.err());
}

async fn connect_upstream(
    cx: &ConnCtx,
    tcp: TcpStream,
    name: &Host,
    offer: AlpnOffer,
    seen: &mut Option<CertSummary>,
) -> Result<UpstreamTlsStream, &'static str> {
    let server_name = match name {
        Host::Domain(d) => {
            ServerName::try_from(d.as_str().to_string()).map_err(|_| "upstream_bad_name")?
        }
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
    };
    let connector = TlsConnector::from(cx.snap.upstream.config(offer));
    let started = Instant::now();
    let timeout = cx.snap.config.proxy.timeouts.handshake;
    let result = tokio::time::timeout(timeout, connector.connect(server_name, tcp)).await;
    let elapsed = started.elapsed().as_secs_f64();
    cx.rt.metrics.upstream_tls_seconds.observe(elapsed);
    match result {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            if let Some(leaf) = tls_error(&e)
                .and_then(cert_failure)
                .and_then(|f| f.leaf.clone())
            {
                *seen = Some(leaf);
            }
            Err(io_tls_code(&e))
        }
        Err(_) => Err("upstream_tls_timeout"),
    }
}

fn upstream_cert(s: CertSummary) -> UpstreamCert {
    UpstreamCert {
        issuer: s.issuer,
        subject: s.subject,
        not_before: s.not_before,
        not_after: s.not_after,
    }
}

fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn io_tls_code(e: &std::io::Error) -> &'static str {
    match tls_error(e) {
        Some(tls) => upstream_error_code(tls),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "upstream_closed_during_handshake",
        None => "upstream_reset_during_handshake",
    }
}

/// Finishes the client handshake with a minted leaf for `name`.
async fn accept_client(
    client: ClientIo,
    hello: Bytes,
    name: &Host,
    alpn: Option<Vec<u8>>,
    cx: &ConnCtx,
) -> Result<ClientTls, String> {
    let leaf_name = match name {
        Host::Domain(d) => LeafName::Dns(d.as_str().to_string()),
        Host::Ip(ip) => LeafName::Ip(*ip),
    };
    let started = Instant::now();
    let minted = cx.rt.minter.leaf(&leaf_name);
    let (leaf, hit) = minted.map_err(|e| format!("{}: {e}", e.code()))?;
    if hit {
        cx.rt.metrics.leaf_cache_hits.inc();
    } else {
        cx.rt.metrics.leaf_cache_misses.inc();
        cx.rt
            .metrics
            .mint_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    let mut config = (*cx.rt.server_template).clone();
    config.cert_resolver = Arc::new(rustls::sign::SingleCertAndKey::from(leaf));
    config.alpn_protocols = alpn.into_iter().collect();
    let io = PrefixedIo::new(hello, client);
    let handshake = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), io)
            .await
            .map_err(|e| format!("client_hello_rejected: {e}"))?;
        start
            .into_stream(Arc::new(config))
            .await
            .map_err(|e| client_tls_error(&e))
    };
    match tokio::time::timeout(cx.snap.config.proxy.timeouts.handshake, handshake).await {
        Ok(r) => r,
        Err(_) => Err("client_handshake_timeout".into()),
    }
}

/// The client-side handshake failure as a signal: `alert:unknown_ca` and friends are what a
/// pinning client (or one without the CA) sends.
fn client_tls_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(a)) => format!("alert:{}", alert_name(*a)),
        Some(other) => format!("client_tls_error: {other}"),
        None => format!("client_closed_during_handshake: {e}"),
    }
}

/// Lowercase snake-case alert name (RFC 8446 §6.2 spelling).
pub fn alert_name(a: rustls::AlertDescription) -> String {
    let debug = format!("{a:?}");
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out.replace("unknown_c_a", "unknown_ca")
}

async fn serve_error(
    client: ClientIo,
    hello: Bytes,
    name: &Host,
    alpn: Option<Vec<u8>>,
    cx: &ConnCtx,
    code: &'static str,
) -> Result<(), String> {
    let tls = accept_client(client, hello, name, alpn.clone(), cx).await?;
    let id = cx.id;
    let detail = format!(
        "sluice could not establish a trusted connection to {name}: {}.",
        describe(code)
    );
    let service = service_fn(move |_req: Request<Incoming>| {
        let resp = respond::page(502, code, respond::title(502), &detail, id);
        async move { Ok::<_, Infallible>(resp) }
    });
    let io = TokioIo::new(tls);
    let r = if alpn.is_some() {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(io, service)
            .await
    };
    r.map_err(|e| e.to_string())
}

/// The upstream side of a decrypted connection.
enum Upstream {
    H1(Mutex<hyper::client::conn::http1::SendRequest<UpBody>>),
    H2(hyper::client::conn::http2::SendRequest<UpBody>),
}

/// The first application data, or None if the client closed (FIN, RST or close_notify)
/// before sending any.
async fn first_data(tls: &mut ClientTls) -> Option<Bytes> {
    use tokio::io::AsyncReadExt;
    let mut buf = bytes::BytesMut::with_capacity(16 * 1024);
    match tls.read_buf(&mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(buf.freeze()),
    }
}

async fn serve_decrypted(
    tls: PrefixedIo<ClientTls>,
    up: UpstreamTlsStream,
    h2: bool,
    name: &Host,
    t: &Target,
    cx: &Arc<ConnCtx>,
) -> Result<(), String> {
    let io = TokioIo::new(up);
    let upstream = if h2 {
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("upstream h2: {e}"))?;
        tokio::spawn(conn);
        Upstream::H2(send)
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("upstream h1: {e}"))?;
        tokio::spawn(conn.with_upgrades());
        Upstream::H1(Mutex::new(send))
    };
    let inner = Arc::new(Inner {
        upstream,
        name: name.clone(),
        port: t.port,
        base: t.rec.clone(),
        cx: cx.clone(),
    });
    let service = service_fn(move |req| {
        let inner = inner.clone();
        async move { Ok::<_, Infallible>(inner.handle(req).await) }
    });
    let io = TokioIo::new(tls);
    let r = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        // The head deadline also bounds how long an idle keep-alive connection is kept.
        hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(cx.snap.config.proxy.timeouts.header)
            .max_buf_size(64 * 1024)
            .serve_connection(io, service)
            .with_upgrades()
            .await
    };
    r.map_err(|e| e.to_string())
}

struct Inner {
    upstream: Upstream,
    name: Host,
    port: u16,
    base: AccessRecord,
    cx: Arc<ConnCtx>,
}

impl Inner {
    async fn handle(&self, req: Request<Incoming>) -> Response<LoggedBody<InnerBody>> {
        let started = Instant::now();
        let mut rec = AccessRecord {
            ts: timestamp(SystemTime::now()),
            kind: "request",
            method: Some(req.method().to_string()),
            url: Some(self.url(&req)),
            decision: Some("decrypt"),
            reason: self.base.reason.clone(),
            ..self.base.clone()
        };
        rec.bytes_up = 0;
        rec.bytes_down = 0;
        rec.upstream_cert = None;
        let up = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let resp = match self.exchange(req, &mut rec, &up).await {
            Ok(resp) => resp,
            Err(stop) => {
                rec.decision = Some("block");
                rec.reason = Some(stop.reason.into());
                rec.inspection = Some(stop.inspection).filter(|i| !i.is_empty());
                let page = respond::page(
                    stop.status,
                    stop.reason,
                    respond::title(stop.status),
                    &stop.detail,
                    self.cx.id,
                );
                page.map(|b| Either::Right(Either::Left(b)))
            }
        };
        rec.status = Some(resp.status().as_u16());
        let log = self.cx.rt.log.clone();
        resp.map(|body| LoggedBody::new(body, rec, log, started, up))
    }

    /// One request: authority and URL checks, the upload held and judged when a rule could
    /// apply, the upstream round trip, then the download likewise.
    async fn exchange(
        &self,
        mut req: Request<Incoming>,
        rec: &mut AccessRecord,
        up: &Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Response<InnerBody>, Stop> {
        if let Err((status, reason)) = self.check_authority(&req) {
            let detail = "This request names a different host than the connection it was sent on.";
            return Err(Stop {
                status,
                reason,
                detail: detail.into(),
                inspection: String::new(),
            });
        }
        let insp = self.cx.snap.inspector.clone();
        let policy = self.base.policy.clone().unwrap_or_default();
        if let Some(stop) = insp.url_block(&policy, &self.name, req.uri()) {
            return Err(stop);
        }
        let judge = insp.wants_bodies(&policy);
        rec.inspection = Some(if judge { "clean" } else { "skipped:no_rules" }.into());
        let upgrade = wants_websocket(&req).then(|| hyper::upgrade::on(&mut req));
        let seen = judge.then(|| {
            (
                req.method().clone(),
                req.uri().clone(),
                req.headers().clone(),
            )
        });
        let (parts, body) = req.into_parts();
        let body = match &seen {
            Some((method, uri, headers)) if has_body(method, headers) => {
                match insp
                    .body(&policy, (method, uri, headers), None, body)
                    .await?
                {
                    (crate::inspect::Scanned::Held(b), verdict) => {
                        rec.inspection = Some(verdict);
                        Either::Right(Either::Left(Full::new(b)))
                    }
                    (crate::inspect::Scanned::Streamed(r), verdict) => {
                        rec.inspection = Some(verdict);
                        Either::Right(Either::Right(r))
                    }
                }
            }
            _ => Either::Left(body),
        };
        let body = CountingBody::new(body, up.clone());
        let mut resp = match self.send(Request::from_parts(parts, body)).await {
            Ok(resp) => resp,
            Err(e) => {
                rec.error = Some(e);
                let detail = "The origin server closed or reset the connection.";
                return Err(Stop {
                    status: 502,
                    reason: "upstream_error",
                    detail: detail.into(),
                    inspection: String::new(),
                });
            }
        };
        if let (Some(client_up), 101) = (upgrade, resp.status().as_u16()) {
            let up_up = hyper::upgrade::on(&mut resp);
            tokio::spawn(splice_upgrades(client_up, up_up));
        }
        let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
        strip_hop_by_hop(resp.headers_mut(), switching);
        let judged = seen.filter(|(m, _, _)| m != http::Method::HEAD && response_has_body(&resp));
        let Some((method, uri, headers)) = judged else {
            return Ok(resp.map(Either::Left));
        };
        let (mut parts, body) = resp.into_parts();
        let (scanned, verdict) = insp
            .body(
                &policy,
                (&method, &uri, &headers),
                Some((parts.status, &parts.headers)),
                body,
            )
            .await?;
        rec.inspection = Some(verdict);
        Ok(match scanned {
            crate::inspect::Scanned::Held(b) => {
                // The held body goes out with its exact length.
                parts.headers.remove(header::TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
                Response::from_parts(parts, Either::Right(Either::Left(Full::new(b))))
            }
            crate::inspect::Scanned::Streamed(r) => {
                Response::from_parts(parts, Either::Right(Either::Right(r)))
            }
        })
    }

    fn url(&self, req: &Request<Incoming>) -> String {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        match (&self.name, self.port) {
            (Host::Ip(std::net::IpAddr::V6(ip)), 443) => format!("https://[{ip}]{path}"),
            (Host::Ip(std::net::IpAddr::V6(ip)), port) => format!("https://[{ip}]:{port}{path}"),
            (name, 443) => format!("https://{name}{path}"),
            (name, port) => format!("https://{name}:{port}{path}"),
        }
    }

    /// The request must be for the host this connection was decided and verified for
    /// (security matrix PE-04): another authority gets 421, two Host headers 400.
    fn check_authority(&self, req: &Request<Incoming>) -> Result<(), (u16, &'static str)> {
        // An origin is not a proxy: CONNECT inside a decrypted tunnel is refused (matrix PE-16).
        if req.method() == http::Method::CONNECT {
            return Err((405, "connect_in_tunnel"));
        }
        let hosts = req.headers().get_all(header::HOST).iter().count();
        if hosts > 1 {
            return Err((400, "duplicate_host_header"));
        }
        let authority = match req.uri().authority() {
            Some(a) => a.host().to_string(),
            None => match req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
            {
                Some(h) => h
                    .parse::<http::uri::Authority>()
                    .map(|a| a.host().to_string())
                    .map_err(|_| (400, "bad_host_header"))?,
                None if req.version() == Version::HTTP_10 => return Ok(()),
                None => return Err((400, "missing_host_header")),
            },
        };
        match Host::parse(&authority) {
            Ok(h) if h == self.name => Ok(()),
            _ => Err((421, "authority_mismatch")),
        }
    }

    async fn send(&self, req: Request<UpBody>) -> Result<Response<Incoming>, String> {
        let (mut parts, body) = req.into_parts();
        let websocket = parts
            .headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        strip_hop_by_hop(&mut parts.headers, websocket);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let authority = if self.port == 443 {
            self.name.to_string()
        } else {
            format!("{}:{}", self.name, self.port)
        };
        let authority = if matches!(self.name, Host::Ip(std::net::IpAddr::V6(_))) {
            format!("[{}]", authority)
        } else {
            authority
        };
        match &self.upstream {
            Upstream::H2(send) => {
                parts.uri = Uri::builder()
                    .scheme("https")
                    .authority(authority.as_str())
                    .path_and_query(path)
                    .build()
                    .map_err(|e| e.to_string())?;
                parts.version = Version::HTTP_2;
                parts.headers.remove(header::HOST);
                let mut send = send.clone();
                send.ready().await.map_err(|e| e.to_string())?;
                send.send_request(Request::from_parts(parts, body))
                    .await
                    .map_err(|e| e.to_string())
            }
            Upstream::H1(send) => {
                parts.uri = path
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| e.to_string())?;
                if !parts.headers.contains_key(header::HOST) {
                    if let Ok(v) = HeaderValue::from_str(&authority) {
                        parts.headers.insert(header::HOST, v);
                    }
                }
                let mut send = send.lock().await;
                send.ready().await.map_err(|e| e.to_string())?;
                send.send_request(Request::from_parts(parts, body))
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Whether a request carries a body worth holding (RFC 9112 §6.3: framed by length or
/// chunking).
pub(crate) fn has_body(method: &http::Method, headers: &HeaderMap) -> bool {
    let framed = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    framed && method != http::Method::GET && method != http::Method::HEAD
}

/// Whether a response has a body to judge (not 1xx/204/304).
pub(crate) fn response_has_body<B>(resp: &Response<B>) -> bool {
    let s = resp.status();
    !(s.is_informational()
        || s == http::StatusCode::NO_CONTENT
        || s == http::StatusCode::NOT_MODIFIED)
}

fn wants_websocket(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

async fn splice_upgrades(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    if let (Ok(c), Ok(u)) = (client.await, upstream.await) {
        let _ = crate::relay::relay(
            TokioIo::new(c),
            TokioIo::new(u),
            std::time::Duration::from_secs(300),
        )
        .await;
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any named in `Connection`.
/// WebSocket handshakes keep `Connection: upgrade` and `Upgrade: websocket`; every other
/// upgrade (h2c in particular, security matrix PP-08) is stripped.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_websocket: bool) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !(s.is_empty() || keep_websocket && s == "upgrade"))
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for h in [
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "http2-settings",
    ] {
        headers.remove(h);
    }
    if keep_websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}
