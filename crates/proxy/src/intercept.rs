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
use std::time::Instant;

use bytes::Bytes;
use http::Request;
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

use crate::count::{Counters, CountingBody};
use crate::front::ClientIo;
use crate::log::UpstreamCert;
use crate::pinning;
use crate::respond;
use crate::tunnel::{finish, Target};
use crate::ConnCtx;

mod serve;

pub use serve::strip_hop_by_hop;
pub(crate) use serve::{has_body, response_has_body};
use serve::{Inner, Upstream};

type ClientTls = tokio_rustls::server::TlsStream<PrefixedIo<ClientIo>>;
type UpstreamTlsStream = tokio_rustls::client::TlsStream<TcpStream>;
pub(crate) use crate::inspect::InnerBody;
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
    if let Some(why) = cx.rt.minter.unavailable() {
        // No CA to mint with: fail closed before anything reaches the upstream (FT-05).
        use tokio::io::AsyncWriteExt;
        let mut client = client;
        let _ = client
            .write_all(&crate::tunnel::alert(crate::tunnel::INTERNAL_ERROR))
            .await;
        let error = Some(format!("the CA is unavailable: {why}"));
        return finish(&cx, t, &counters, Some("block"), "mint_failed", error);
    }
    let offer = AlpnOffer::from_client(&hello.alpn);
    let mut seen = None;
    let up = connect_upstream(&cx, upstream, &name, offer, &mut seen).await;
    let up = match up {
        Ok(up) => up,
        Err(code) => {
            t.rec.upstream_cert = seen.map(|c| upstream_cert(c, &cx));
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
    t.rec.tls_version = conn.protocol_version().map(version_name);
    t.rec.tls_cipher = conn.negotiated_cipher_suite().map(suite_name);
    let summary = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| cert_summary(c.as_ref()));
    let origin_expiry = summary.as_ref().map(|s| s.expires);
    t.rec.upstream_cert = summary.map(|c| upstream_cert(c, &cx));
    t.rec.reason = Some(reason.into());
    let accepted = accept_client(client, hello_bytes, &name, alpn.clone(), origin_expiry, &cx);
    let mut tls = match accepted.await {
        Ok(tls) => tls,
        Err(e) => {
            if e.starts_with("mint_failed") {
                return finish(&cx, t, &counters, Some("block"), "mint_failed", Some(e));
            }
            if let Some(signal) = pinning::alert_signal(&e) {
                pinning::observe(&cx.rt, &t.rec, signal);
            }
            return finish(&cx, t, &counters, Some("decrypt"), reason, Some(e));
        }
    };
    let (_, server) = tls.get_ref();
    t.rec.client_tls_version = server.protocol_version().map(version_name);
    t.rec.client_tls_cipher = server.negotiated_cipher_suite().map(suite_name);
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

/// HTTP/2 towards a decrypted client, with explicit budgets (security matrix RL-06): streams
/// per connection, header list size, and how many streams a client may have reset before
/// it is cut off (Rapid Reset, CVE-2023-44487; hyper answers with GOAWAY).
fn h2_server() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(250)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(Some(256));
    builder
}

/// `TLSv1.3`, `TLSv1.2`.
fn version_name(v: rustls::ProtocolVersion) -> String {
    format!("{v:?}").replace('_', ".")
}

/// The IANA name, e.g. `TLS13_AES_128_GCM_SHA256`.
fn suite_name(s: rustls::SupportedCipherSuite) -> String {
    s.suite()
        .as_str()
        .map_or_else(|| format!("{:?}", s.suite()), str::to_owned)
}

fn upstream_cert(s: CertSummary, cx: &ConnCtx) -> UpstreamCert {
    // `crl` only when the leaf's own issuer has a CRL among `upstream.crls`; a CRL for some
    // other CA says nothing about this certificate (issue 12 item 12).
    let checked = cx.snap.upstream.crl_covers(&s.issuer_der);
    UpstreamCert {
        issuer: s.issuer,
        subject: s.subject,
        not_before: s.not_before,
        not_after: s.not_after,
        revocation: if checked { "crl" } else { "unknown" },
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

/// Finishes the client handshake with a minted leaf for `name`, valid no longer than the
/// origin's certificate (`origin_expiry`).
async fn accept_client(
    client: ClientIo,
    hello: Bytes,
    name: &Host,
    alpn: Option<Vec<u8>>,
    origin_expiry: Option<time::OffsetDateTime>,
    cx: &ConnCtx,
) -> Result<ClientTls, String> {
    let leaf_name = match name {
        Host::Domain(d) => LeafName::Dns(d.as_str().to_string()),
        Host::Ip(ip) => LeafName::Ip(*ip),
    };
    let started = Instant::now();
    let minted = cx.rt.minter.leaf_until(&leaf_name, origin_expiry);
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
    let tls = accept_client(client, hello, name, alpn.clone(), None, cx).await?;
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
        h2_server().serve_connection(io, service).await
    } else {
        hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(io, service)
            .await
    };
    r.map_err(|e| e.to_string())
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
    let (failed, conn_failure) = tokio::sync::watch::channel(None);
    let upstream = if h2 {
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("upstream h2: {e}"))?;
        serve::drive_upstream(conn, failed);
        Upstream::H2(send)
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("upstream h1: {e}"))?;
        serve::drive_upstream(conn.with_upgrades(), failed);
        Upstream::H1(Mutex::new(send))
    };
    let inner = Arc::new(Inner {
        upstream,
        conn_failure,
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
        h2_server().serve_connection(io, service).await
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
