//! A CONNECT tunnel after `200 Connection Established`: read the ClientHello without consuming
//! it, decide with both names (SNI and CONNECT host), then relay untouched (bypass), intercept
//! (decrypt) or refuse. "Not parsed yet" never means relay: bytes go upstream only after a
//! decision on a complete ClientHello (security matrix PE-09, PE-10, PE-14).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use sluice_policy::config::NonTls;
use sluice_policy::engine::{Action, Query};
use sluice_policy::name::{DomainName, Host};
use sluice_tls::hello::{parse_client_hello, ClientHello, HelloError};
use sluice_tls::peek::{read_client_hello, PeekError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::count::Counters;
use crate::front::{unix_now, ClientIo};
use crate::log::AccessRecord;
use crate::relay::relay;
use crate::ConnCtx;

/// Where a tunnel goes and what is known so far.
pub struct Target {
    /// CONNECT host.
    pub host: Host,
    /// CONNECT port.
    pub port: u16,
    /// The upstream address dialled.
    pub addr: SocketAddr,
    /// When the CONNECT arrived.
    pub started: SystemTime,
    /// The connection's access-log record, filled in as the tunnel progresses.
    pub rec: AccessRecord,
}

/// TLS alert record: fatal, with the given description (RFC 8446 §6).
pub(crate) fn alert(description: u8) -> [u8; 7] {
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}
const ACCESS_DENIED: u8 = 49;
pub(crate) const INTERNAL_ERROR: u8 = 80;
const DECODE_ERROR: u8 = 50;
const UNRECOGNIZED_NAME: u8 = 112;

/// Runs the tunnel to its end and logs it.
pub async fn run(
    mut client: ClientIo,
    read_buf: Bytes,
    upstream: TcpStream,
    mut t: Target,
    cx: Arc<ConnCtx>,
    counters: Arc<Counters>,
) {
    let mut buf = BytesMut::from(&read_buf[..]);
    let cfg = &cx.snap.config.proxy;
    let peeked = tokio::time::timeout(
        cfg.timeouts.client_hello,
        read_client_hello(&mut client, &mut buf, cfg.max_client_hello),
    )
    .await;
    let hello = match peeked {
        Ok(Ok(hello)) => hello,
        Ok(Err(PeekError::Hello(HelloError::NotTls))) if cfg.non_tls == NonTls::Tunnel => {
            // Not TLS, so no SNI: the CONNECT host alone is decided, and block lists apply to
            // it as to any tunnel (HC-02). Whatever else the policy says, these bytes cannot be
            // decrypted or inspected: the administrator chose to relay them.
            let d = decide(&cx, &mut t, None, None);
            if d.action == Action::Block {
                return finish(&cx, t, &counters, Some("block"), d.reason, None);
            }
            return bypass(
                client,
                buf.freeze(),
                upstream,
                t,
                &cx,
                "non_tls_tunnel",
                &counters,
            )
            .await;
        }
        Ok(Err(e)) => {
            if matches!(
                e,
                PeekError::Hello(
                    HelloError::TooLarge | HelloError::Malformed(_) | HelloError::BadSni(_)
                )
            ) {
                let code = if matches!(e, PeekError::Hello(HelloError::BadSni(_))) {
                    UNRECOGNIZED_NAME
                } else {
                    DECODE_ERROR
                };
                let _ = client.write_all(&alert(code)).await;
            }
            let decision = if matches!(e, PeekError::Eof | PeekError::Io(_)) {
                None
            } else {
                Some("block")
            };
            return finish(&cx, t, &counters, decision, e.code(), Some(e.to_string()));
        }
        Err(_) => {
            return finish(
                &cx,
                t,
                &counters,
                Some("block"),
                "client_hello_timeout",
                None,
            )
        }
    };
    let sni = match hello.sni.as_deref().map(DomainName::parse) {
        None => None,
        Some(Ok(name)) => Some(name),
        Some(Err(e)) => {
            let _ = client.write_all(&alert(UNRECOGNIZED_NAME)).await;
            return finish(
                &cx,
                t,
                &counters,
                Some("block"),
                "bad_sni",
                Some(e.to_string()),
            );
        }
    };
    describe_hello(&mut t.rec, &hello, sni.as_ref());
    let ja4 = t.rec.ja4.clone();
    // ECH (PE-12) changes nothing here on purpose: browsers send a GREASE ECH extension on
    // every connection, indistinguishable from real ECH, so its presence cannot be a signal.
    // A real ECH client behind a proxy CONNECTs to the site it wants while its SNI names the
    // provider's public name, and the SNI/CONNECT mismatch rule never bypasses that.
    let d = decide(&cx, &mut t, sni.as_ref(), ja4.as_deref());
    match d.action {
        Action::Block => {
            let _ = client.write_all(&alert(ACCESS_DENIED)).await;
            finish(&cx, t, &counters, Some("block"), d.reason, None);
        }
        Action::Bypass => {
            t.rec.evidence = d.evidence;
            bypass(client, buf.freeze(), upstream, t, &cx, d.reason, &counters).await;
        }
        Action::Decrypt => {
            let name = sni.map_or_else(|| t.host.clone(), Host::Domain);
            crate::intercept::run(
                client,
                buf.freeze(),
                upstream,
                name,
                &hello,
                t,
                d.reason,
                cx,
                counters,
            )
            .await;
        }
    }
}

/// Asks the policy engine about this tunnel and notes the answer in its record.
fn decide(
    cx: &ConnCtx,
    t: &mut Target,
    sni: Option<&DomainName>,
    ja4: Option<&str>,
) -> sluice_policy::engine::Decision {
    let q = Query {
        client: cx.client.ip(),
        user: t.rec.user.as_deref(),
        host: Some(&t.host),
        sni,
        ja4,
        now: unix_now(),
        explain: false,
    };
    let exceptions = cx.rt.exceptions.load();
    let d = cx.snap.engine.decide(&q, &exceptions);
    t.rec.policy = Some(d.policy.to_string());
    t.rec.app = d.app.clone();
    t.rec.category = d.category.clone();
    t.rec.rule = d.rule.map(|r| cx.snap.engine.describe(r));
    t.rec.sni_mismatch = d.sni_mismatch;
    d
}

fn describe_hello(rec: &mut AccessRecord, hello: &ClientHello, sni: Option<&DomainName>) {
    rec.sni = sni.map(|s| s.to_string());
    rec.ech = hello.ech;
    rec.ja4 = Some(sluice_tls::ja4::ja4(hello));
    rec.tls_version = Some(
        if hello.offers_tls13() {
            "TLSv1.3"
        } else {
            "TLSv1.2"
        }
        .into(),
    );
    rec.alpn = hello.alpn_str().first().cloned();
}

async fn bypass(
    client: ClientIo,
    hello: Bytes,
    mut upstream: TcpStream,
    mut t: Target,
    cx: &ConnCtx,
    reason: &str,
    counters: &Counters,
) {
    // Bypassed bytes are never decrypted, so never inspected; the log says so.
    t.rec.inspection = Some("skipped:bypass".into());
    if let Err(e) = upstream.write_all(&hello).await {
        return finish(
            cx,
            t,
            counters,
            Some("bypass"),
            reason,
            Some(format!("upstream write: {e}")),
        );
    }
    let mut client = client;
    // Every TLS bypass is guarded, with or without SNI: a first hello without one must not let
    // a retried hello name a host of its choosing (HC-05). Non-TLS tunnels have no hello.
    if t.rec.ja4.is_some() {
        let timeout = cx.snap.config.proxy.timeouts.handshake;
        let guard = retry_guard(
            &mut client,
            &mut upstream,
            t.rec.sni.as_deref(),
            cx.snap.config.proxy.max_client_hello,
        );
        match tokio::time::timeout(timeout, guard).await {
            Ok(Ok(())) => {}
            Ok(Err(RetryError::SniChanged)) => {
                let _ = client.write_all(&alert(ACCESS_DENIED)).await;
                return finish(
                    cx,
                    t,
                    counters,
                    Some("block"),
                    "sni_changed_after_hrr",
                    None,
                );
            }
            Ok(Err(RetryError::Io(e))) => {
                return finish(cx, t, counters, Some("bypass"), reason, Some(e))
            }
            Err(_) => {
                return finish(
                    cx,
                    t,
                    counters,
                    Some("bypass"),
                    reason,
                    Some("handshake timeout".into()),
                )
            }
        }
    }
    let relayed = relay(client, upstream, cx.snap.config.proxy.timeouts.idle).await;
    finish(cx, t, counters, Some("bypass"), reason, relayed.error);
}

/// The random of a HelloRetryRequest: SHA-256 of "HelloRetryRequest" (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

enum RetryError {
    SniChanged,
    Io(String),
}

/// A bypass forwards the first ClientHello, which was checked. If the server answers with a
/// HelloRetryRequest, the client sends a second ClientHello — which must name the same server
/// (RFC 8446 §4.1.2), and is checked before it is forwarded, so a retry cannot smuggle a
/// different SNI through an exemption (security matrix PE-13).
async fn retry_guard(
    client: &mut ClientIo,
    upstream: &mut TcpStream,
    sni: Option<&str>,
    max: usize,
) -> Result<(), RetryError> {
    use tokio::io::AsyncReadExt;
    let io = |e: std::io::Error| RetryError::Io(e.to_string());
    // 5 (record) + 4 (handshake) + 2 (version) + 32 (random) bytes tell a HelloRetryRequest.
    let mut first = BytesMut::with_capacity(4096);
    while first.len() < 43 {
        if upstream.read_buf(&mut first).await.map_err(io)? == 0 {
            break;
        }
        if first[0] != 0x16 {
            break;
        }
    }
    client.write_all(&first).await.map_err(io)?;
    let hrr =
        first.len() >= 43 && first[0] == 0x16 && first[5] == 0x02 && first[11..43] == HRR_RANDOM;
    if !hrr {
        return Ok(());
    }
    let mut second = BytesMut::with_capacity(4096);
    let hello = loop {
        // A TLS 1.3 client may send a change_cipher_spec record first (RFC 8446 §D.4).
        let skip = leading_ccs(&second);
        if second.len() > skip {
            match parse_client_hello(&second[skip..], max) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(_) => return Err(RetryError::SniChanged),
            }
        }
        if client.read_buf(&mut second).await.map_err(io)? == 0 {
            return Err(RetryError::Io(
                "client closed after HelloRetryRequest".into(),
            ));
        }
    };
    let again = hello
        .sni
        .as_deref()
        .and_then(|s| DomainName::parse(s).ok())
        .map(|d| d.to_string());
    if again.as_deref() != sni {
        return Err(RetryError::SniChanged);
    }
    upstream.write_all(&second).await.map_err(io)
}

/// Length of the change_cipher_spec records at the start of `buf`.
fn leading_ccs(buf: &[u8]) -> usize {
    let mut at = 0;
    while buf.len() >= at + 6 && buf[at] == 0x14 && buf[at + 3] == 0x00 && buf[at + 4] == 0x01 {
        at += 6;
    }
    at
}

/// Emits the tunnel's one access-log record.
pub(crate) fn finish(
    cx: &ConnCtx,
    mut t: Target,
    counters: &Counters,
    decision: Option<&'static str>,
    reason: &str,
    error: Option<String>,
) {
    let (up, down) = counters.get();
    t.rec.decision = decision;
    t.rec.reason = Some(reason.to_string());
    t.rec.status = Some(200);
    t.rec.error = error;
    t.rec.bytes_up = up;
    t.rec.bytes_down = down;
    t.rec.duration_ms = t.started.elapsed().map_or(0, |d| d.as_millis() as u64);
    cx.rt.log.emit(t.rec);
}
