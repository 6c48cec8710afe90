//! Plain-HTTP forwarding for absolute-form requests (`GET http://host/path`): the same
//! decision as a CONNECT on the request's host, hop-by-hop headers removed, pooled keep-alive
//! connections upstream (hyper-util's client over the gateway's own dialer, so every
//! connection passes destination control).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use http::{header, HeaderValue, Request, Response, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_policy::engine::{Action, Query};
use sluice_policy::name::Host;
use tokio::net::TcpStream;

use crate::front::{unix_now, Body};
use crate::intercept::strip_hop_by_hop;
use crate::log::{timestamp, AccessRecord};
use crate::resolve::{DialError, Dialer};
use crate::respond;
use crate::ConnCtx;

/// The pooled plain-HTTP client.
pub type HttpClient = Client<DialConnector, crate::inspect::InnerBody>;

/// Builds the client for a dialer.
pub fn http_client(dialer: Arc<Dialer>) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(32)
        .build(DialConnector { dialer })
}

/// Connects through [`Dialer`] (hosts file, DNS, destination control).
#[derive(Clone)]
pub struct DialConnector {
    dialer: Arc<Dialer>,
}

impl tower_service::Service<Uri> for DialConnector {
    type Response = TokioIo<TcpStream>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.dialer.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .and_then(|h| Host::parse(h).ok())
                .ok_or_else(|| DialError::Dns {
                    host: uri.to_string(),
                    message: "no valid host".into(),
                })?;
            let port = uri.port_u16().unwrap_or(80);
            let (stream, _) = dialer.dial(&host, port).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// Forwards one absolute-form request.
pub async fn forward(
    mut req: Request<Incoming>,
    cx: Arc<ConnCtx>,
    user: Option<String>,
) -> Response<Body> {
    let started = Instant::now();
    let mut rec = AccessRecord {
        ts: timestamp(SystemTime::now()),
        conn_id: cx.id,
        client: cx.client.ip().to_string(),
        kind: "request",
        method: Some(req.method().to_string()),
        url: Some(req.uri().to_string()),
        user,
        ..Default::default()
    };
    let target = match target(req.uri()) {
        Ok(t) => t,
        Err(why) => return crate::front::refuse(&cx, rec, 400, "bad_request_target", why),
    };
    rec.host = Some(target.0.to_string());
    rec.port = Some(target.1);
    let q = Query {
        client: cx.client.ip(),
        user: rec.user.as_deref(),
        host: Some(&target.0),
        sni: None,
        ja4: None,
        now: unix_now(),
        explain: false,
    };
    let d = cx.snap.engine.decide(&q, &cx.rt.exceptions.load());
    rec.policy = Some(d.policy.to_string());
    rec.app = d.app.clone();
    rec.category = d.category.clone();
    rec.rule = d.rule.map(|r| cx.snap.engine.describe(r));
    if d.action == Action::Block {
        let detail = crate::front::block_detail(&target.0.to_string(), &d);
        return block_page(&cx, rec, 403, d.reason, &detail, started);
    }
    rec.decision = Some(match d.action {
        Action::Bypass => "bypass",
        _ => "decrypt",
    });
    rec.reason = Some(d.reason.into());
    if req.headers().get_all(header::HOST).iter().count() > 1 {
        return block_page(
            &cx,
            rec,
            400,
            "duplicate_host_header",
            "Two Host headers.",
            started,
        );
    }
    strip_hop_by_hop(req.headers_mut(), false);
    // RFC 9112 §3.2.2: the absolute-form target wins over any Host header.
    if let Some(auth) = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, auth);
    }
    let insp = cx.snap.inspector.clone();
    let policy = d.policy.to_string();
    if let Some(stop) = insp.url_block(&policy, &target.0, req.uri()) {
        rec.inspection = Some(stop.inspection);
        return block_page(&cx, rec, stop.status, stop.reason, &stop.detail, started);
    }
    let judge = insp.wants_bodies(&policy);
    rec.inspection = Some(if judge { "clean" } else { "skipped:no_rules" }.into());
    let seen = judge.then(|| {
        (
            req.method().clone(),
            req.uri().clone(),
            req.headers().clone(),
        )
    });
    let (parts, body) = req.into_parts();
    let body = match insp
        .upload(&policy, seen.as_ref(), body, &mut rec.inspection)
        .await
    {
        Ok(body) => body,
        Err(stop) => return stopped(&cx, rec, stop, started),
    };
    let resp = match cx.snap.http.request(Request::from_parts(parts, body)).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut(), false);
            resp
        }
        Err(e) => {
            let dial = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<DialError>());
            let (status, code, detail) = match dial {
                Some(d) => (d.status(), d.code(), d.to_string()),
                None => (502, "upstream_error", e.to_string()),
            };
            rec.error = Some(detail.clone());
            return block_page(&cx, rec, status, code, &detail, started);
        }
    };
    let resp = match insp
        .download(&policy, seen, resp, &mut rec.inspection)
        .await
    {
        // The front end's body type nests the same variants one level deeper.
        Ok(resp) => resp.map(|body| match body {
            Either::Left(relayed) => Either::Left(relayed),
            Either::Right(Either::Left(held)) => Either::Right(Either::Left(held)),
            Either::Right(Either::Right(resumed)) => {
                Either::Right(Either::Right(Either::Right(resumed)))
            }
        }),
        Err(stop) => return stopped(&cx, rec, stop, started),
    };
    rec.status = Some(resp.status().as_u16());
    rec.duration_ms = started.elapsed().as_millis() as u64;
    cx.rt.log.emit(rec);
    resp
}

fn stopped(
    cx: &ConnCtx,
    mut rec: AccessRecord,
    stop: crate::inspect::Stop,
    started: Instant,
) -> Response<Body> {
    rec.inspection = Some(stop.inspection);
    block_page(cx, rec, stop.status, stop.reason, &stop.detail, started)
}

fn block_page(
    cx: &ConnCtx,
    mut rec: AccessRecord,
    status: u16,
    reason: &str,
    detail: &str,
    started: Instant,
) -> Response<Body> {
    rec.status = Some(status);
    rec.decision = Some("block");
    rec.reason = Some(reason.into());
    rec.duration_ms = started.elapsed().as_millis() as u64;
    cx.rt.log.emit(rec);
    respond::page(status, reason, respond::title(status), detail, cx.id)
        .map(|b| Either::Right(Either::Left(b)))
}

fn target(uri: &Uri) -> Result<(Host, u16), &'static str> {
    crate::target::absolute_target(uri)
}
