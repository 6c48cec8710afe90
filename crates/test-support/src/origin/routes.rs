//! The origin's routes as one hyper service function, plus the deterministic byte pattern
//! that `/bytes/N` streams (tests compare against [`pattern`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::{lock, Ctx, SeenRequest};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// The pattern repeats every 251 bytes (a prime, so it never lines up with chunk sizes and an
/// offset error shows as a mismatch).
const PERIOD: u64 = 251;
/// Size of each streamed `/bytes/N` chunk.
const CHUNK: usize = 64 * 1024;

/// Byte `i` of the `/bytes/N` pattern.
pub fn pattern_byte(i: u64) -> u8 {
    (i % PERIOD) as u8
}

/// `len` bytes of the `/bytes/N` pattern starting at `offset`.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64).map(pattern_byte).collect()
}

/// The service: records the request, then routes it.
pub(super) async fn handle(
    ctx: Arc<Ctx>,
    mut req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    let seen = record(&req);
    lock(&ctx.seen).requests.push(seen.clone());
    let path = req.uri().path().to_owned();
    let mut res = if path == "/ws" {
        websocket(&mut req)
    } else if path == "/echo" {
        Response::new(req.into_body().map_err(BoxError::from).boxed())
    } else if path == "/headers" {
        json_headers(&seen)
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        match n.parse::<u64>() {
            Ok(n) => Response::new(PatternBody { offset: 0, end: n }.boxed()),
            Err(_) => text(StatusCode::BAD_REQUEST, format!("bad length {n:?}\n")),
        }
    } else {
        text(StatusCode::OK, format!("hello from {}", ctx.name))
    };
    let headers = res.headers_mut();
    insert(headers, "x-origin", &ctx.name);
    insert(headers, "x-seen-host", seen.host.as_deref().unwrap_or(""));
    insert(headers, "x-seen-version", &seen.version);
    Ok(res)
}

fn record(req: &Request<Incoming>) -> SeenRequest {
    let version = match req.version() {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        _ => "other",
    };
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    SeenRequest {
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        uri: req.uri().to_string(),
        version: version.to_owned(),
        host,
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), value)
            })
            .collect(),
    }
}

/// `/headers`: `{"name": ["value", ...], ...}` with lower-case names.
fn json_headers(seen: &SeenRequest) -> Response<ResBody> {
    let mut map = serde_json::Map::new();
    for (name, value) in &seen.headers {
        let entry = map
            .entry(name.clone())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = entry {
            values.push(value.clone().into());
        }
    }
    let body = serde_json::to_vec_pretty(&map).expect("headers serialize to JSON");
    let mut res = Response::new(full(body));
    insert(res.headers_mut(), "content-type", "application/json");
    res
}

/// `/ws`: a 101 and an echo task on the upgraded stream (HTTP/1.1 Upgrade only).
fn websocket(req: &mut Request<Incoming>) -> Response<ResBody> {
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let key = req.headers().get("sec-websocket-key").cloned();
    let (true, Some(key)) = (is_upgrade, key) else {
        return text(
            StatusCode::UPGRADE_REQUIRED,
            "websocket upgrade required\n".into(),
        );
    };
    let accept = crate::ws::accept_key(&String::from_utf8_lossy(key.as_bytes()));
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let _ = crate::ws::serve_echo(hyper_util::rt::TokioIo::new(upgraded)).await;
        }
    });
    let mut res = Response::new(full(Vec::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = res.headers_mut();
    insert(headers, "upgrade", "websocket");
    insert(headers, "connection", "upgrade");
    insert(headers, "sec-websocket-accept", &accept);
    res
}

fn text(status: StatusCode, body: String) -> Response<ResBody> {
    let mut res = Response::new(full(body.into_bytes()));
    *res.status_mut() = status;
    insert(res.headers_mut(), "content-type", "text/plain");
    res
}

fn full(body: Vec<u8>) -> ResBody {
    Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed()
}

fn insert(headers: &mut http::HeaderMap, name: &'static str, value: &str) {
    let value = HeaderValue::from_str(value)
        .unwrap_or_else(|_| HeaderValue::from_static("<not a header value>"));
    headers.insert(name, value);
}

/// `/bytes/N`: the pattern streamed in 64 KiB chunks sliced out of one shared buffer, so 1 GiB
/// costs neither 1 GiB of memory nor a per-byte loop.
struct PatternBody {
    offset: u64,
    end: u64,
}

impl PatternBody {
    /// `CHUNK + PERIOD` bytes of the pattern: any chunk is a slice of it starting at
    /// `offset % PERIOD`.
    fn buffer() -> &'static Bytes {
        static BUF: OnceLock<Bytes> = OnceLock::new();
        BUF.get_or_init(|| Bytes::from(pattern(0, CHUNK + PERIOD as usize)))
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.offset >= self.end {
            return Poll::Ready(None);
        }
        let len = (self.end - self.offset).min(CHUNK as u64) as usize;
        let start = (self.offset % PERIOD) as usize;
        let chunk = Self::buffer().slice(start..start + len);
        self.offset += len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.offset)
    }
}
