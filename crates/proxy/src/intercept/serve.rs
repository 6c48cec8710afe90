//! Serving HTTP on a decrypted connection: each request checked (authority, URL rules,
//! bodies when a rule could judge them) and forwarded over the verified upstream connection;
//! its access-log record is written when its response body has been sent.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{header, HeaderMap, HeaderValue, Request, Response, Uri, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sluice_policy::name::Host;
use tokio::sync::Mutex;

use super::{InnerBody, UpBody};
use crate::count::{CountingBody, LoggedBody};
use crate::inspect::Stop;
use crate::log::{timestamp, AccessRecord};
use crate::respond;
use crate::ConnCtx;

/// The upstream side of a decrypted connection.
pub(super) enum Upstream {
    H1(Mutex<hyper::client::conn::http1::SendRequest<UpBody>>),
    H2(hyper::client::conn::http2::SendRequest<UpBody>),
}

/// Why the upstream connection ended, once it has failed: (detail, reason code).
pub(super) type ConnFailure = tokio::sync::watch::Receiver<Option<(String, &'static str)>>;

pub(super) struct Inner {
    pub(super) upstream: Upstream,
    pub(super) conn_failure: ConnFailure,
    pub(super) name: Host,
    pub(super) port: u16,
    pub(super) base: AccessRecord,
    pub(super) cx: Arc<ConnCtx>,
}

impl Inner {
    pub(super) async fn handle(&self, req: Request<Incoming>) -> Response<LoggedBody<InnerBody>> {
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
        let body = insp
            .upload(&policy, seen.as_ref(), body, &mut rec.inspection)
            .await?;
        let body = CountingBody::new(body, up.clone());
        let mut resp = match self.send(Request::from_parts(parts, body)).await {
            Ok(resp) => resp,
            Err((e, reason)) => {
                let (e, reason) = match reason {
                    "upstream_error" => self.connection_failure().await.unwrap_or((e, reason)),
                    _ => (e, reason),
                };
                rec.error = Some(e);
                let detail = if reason == "upstream_error" {
                    "The origin server closed or reset the connection."
                } else {
                    sluice_tls::verify::describe(reason)
                };
                return Err(Stop {
                    status: 502,
                    reason,
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
        insp.download(&policy, seen, resp, &mut rec.inspection)
            .await
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

    /// What ended the upstream connection, if it failed. A request caught in the failure only
    /// sees "channel closed"; the connection task holds the cause and reports it just after.
    async fn connection_failure(&self) -> Option<(String, &'static str)> {
        let mut rx = self.conn_failure.clone();
        let wait = async {
            rx.wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|failure| failure.clone())
        };
        tokio::time::timeout(std::time::Duration::from_millis(200), wait)
            .await
            .ok()
            .flatten()
    }

    /// Sends one request upstream; an error comes with its reason code.
    async fn send(
        &self,
        req: Request<UpBody>,
    ) -> Result<Response<Incoming>, (String, &'static str)> {
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
                    .map_err(|e| (e.to_string(), "upstream_error"))?;
                parts.version = Version::HTTP_2;
                parts.headers.remove(header::HOST);
                let mut send = send.clone();
                send.ready().await.map_err(upstream_failure)?;
                send.send_request(Request::from_parts(parts, body))
                    .await
                    .map_err(upstream_failure)
            }
            Upstream::H1(send) => {
                parts.uri = path
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| (e.to_string(), "upstream_error"))?;
                if !parts.headers.contains_key(header::HOST) {
                    if let Ok(v) = HeaderValue::from_str(&authority) {
                        parts.headers.insert(header::HOST, v);
                    }
                }
                let mut send = send.lock().await;
                send.ready().await.map_err(upstream_failure)?;
                send.send_request(Request::from_parts(parts, body))
                    .await
                    .map_err(upstream_failure)
            }
        }
    }
}

/// Runs an upstream client connection, reporting why it failed (if it did) to the requests.
pub(super) fn drive_upstream<F>(
    conn: F,
    failed: tokio::sync::watch::Sender<Option<(String, &'static str)>>,
) where
    F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            let _ = failed.send(Some(upstream_failure(e)));
        }
    });
}

/// The detail and reason code of a failed upstream exchange. TLS alerts can arrive after the
/// handshake: in TLS 1.3 a server rejects a missing client certificate only once it has read
/// the client's Finished, so the first request sees `certificate_required` (matrix UC-12).
fn upstream_failure(e: hyper::Error) -> (String, &'static str) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return (e.to_string(), sluice_tls::verify::upstream_error_code(tls));
        }
        source = err.source();
    }
    (e.to_string(), "upstream_error")
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
