//! sluice's data path: the explicit-proxy listener, request heads, CONNECT tunnels with
//! ClientHello peeking, the bypass relay, TLS interception, and plain-HTTP forwarding.
//!
//! Flow of one connection (see docs/architecture.md): [`front`] serves HTTP/1.1 on the proxy
//! port; a CONNECT becomes a [`tunnel`] that peeks the ClientHello and asks the policy engine;
//! the decision leads to a [`relay`] (bypass), [`intercept`] (decrypt) or a refusal. Plain HTTP
//! is handled per request by [`forward`]; [`target`] is the pure step both share (request target
//! → destination). Every connection and request ends in exactly one access-log record ([`log`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use sluice_policy::config::Config;
use sluice_policy::engine::Engine;
use sluice_policy::exceptions::Exceptions;
use sluice_tls::mint::Minter;
use sluice_tls::verify::UpstreamTls;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

pub mod auth;
pub mod count;
pub mod forward;
pub mod front;
pub mod inspect;
pub mod intercept;
pub mod log;
pub mod metrics;
pub mod pinning;
pub mod relay;
pub mod resolve;
pub mod respond;
pub mod target;
pub mod tunnel;

use crate::log::AccessLog;
use crate::resolve::Dialer;

/// Everything that changes together on a config reload. Connections take a snapshot when they
/// start and keep it, so a reload never changes an open connection's decision.
pub struct Snapshot {
    /// The typed configuration.
    pub config: Arc<Config>,
    /// The compiled policy.
    pub engine: Arc<Engine>,
    /// Resolver and destination control.
    pub dialer: Arc<Dialer>,
    /// Upstream TLS configurations.
    pub upstream: Arc<UpstreamTls>,
    /// Pooled plain-HTTP client over `dialer`.
    pub http: forward::HttpClient,
    /// Proxy authentication, when `auth.htpasswd` is set.
    pub auth: Option<auth::Auth>,
    /// Content inspection (URL, file-type, hash and ICAP checks).
    pub inspector: Arc<inspect::Inspector>,
}

impl Snapshot {
    /// Assembles a snapshot.
    pub fn new(
        config: Arc<Config>,
        engine: Arc<Engine>,
        dialer: Arc<Dialer>,
        upstream: Arc<UpstreamTls>,
        auth: Option<auth::Auth>,
        inspector: inspect::Inspector,
    ) -> Self {
        let http = forward::http_client(dialer.clone());
        let inspector = Arc::new(inspector);
        Self {
            config,
            engine,
            dialer,
            upstream,
            http,
            auth,
            inspector,
        }
    }
}

/// Counters shared by the data path (exported as metrics by the admin listener).
#[derive(Default)]
pub struct Stats {
    /// Client connections accepted.
    pub accepted: AtomicU64,
    /// Client connections open now.
    pub active: AtomicUsize,
}

/// Long-lived state of the running gateway.
pub struct Runtime {
    /// Current config snapshot.
    pub snapshot: ArcSwap<Snapshot>,
    /// Pinning exceptions in force.
    pub exceptions: ArcSwap<Exceptions>,
    /// Leaf minting.
    pub minter: Arc<Minter>,
    /// Template for client-facing TLS (certificate and ALPN are set per connection).
    pub server_template: Arc<ServerConfig>,
    /// Access log.
    pub log: AccessLog,
    /// Counters.
    pub stats: Stats,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// The pinning store, when the data dir has one.
    pub pinning: Option<pinning::Pinning>,
    /// Recent decrypted connections that carried data (pinning false-positive guard).
    pub activity: pinning::Activity,
    conn_ids: AtomicU64,
    idle: Notify,
}

impl Runtime {
    /// Assembles the runtime.
    pub fn new(
        snapshot: Snapshot,
        minter: Arc<Minter>,
        log: AccessLog,
        pinning: Option<pinning::Pinning>,
    ) -> Arc<Self> {
        let metrics = log.metrics().clone();
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            exceptions: ArcSwap::from_pointee(Exceptions::empty()),
            minter,
            server_template: Arc::new(server_template()),
            log,
            stats: Stats::default(),
            metrics,
            pinning,
            activity: pinning::Activity::default(),
            conn_ids: AtomicU64::new(1),
            idle: Notify::new(),
        })
    }

    /// Next connection id.
    pub fn next_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits until no client connection is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.stats.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

fn server_template() -> ServerConfig {
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCert));
    // Tickets let returning clients resume without a full handshake; a ticket is only
    // resumed for the same SNI (rustls checks), and decisions are never stored in it.
    if let Ok(ticketer) = rustls::crypto::aws_lc_rs::Ticketer::new() {
        config.ticketer = ticketer;
    }
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(16_384);
    config
}

#[derive(Debug)]
struct NoCert;

impl rustls::server::ResolvesServerCert for NoCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

/// Per-client-connection context.
pub struct ConnCtx {
    /// Connection id.
    pub id: u64,
    /// Client address.
    pub client: SocketAddr,
    /// When it was accepted.
    pub started: Instant,
    /// The snapshot it uses.
    pub snap: Arc<Snapshot>,
    /// The runtime.
    pub rt: Arc<Runtime>,
}

/// A connection stays active (for metrics and graceful shutdown) until the last holder of its
/// context — the HTTP server, or a tunnel that outlives it after CONNECT — lets go.
impl Drop for ConnCtx {
    fn drop(&mut self) {
        self.rt.metrics.active.dec();
        if self.rt.stats.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.rt.idle.notify_waiters();
        }
    }
}

/// Accepts client connections until `shutdown` turns true.
pub async fn serve(listener: TcpListener, rt: Arc<Runtime>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let snap = rt.snapshot.load_full();
        if rt.stats.active.load(Ordering::Relaxed) >= snap.config.proxy.max_connections {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        rt.stats.accepted.fetch_add(1, Ordering::Relaxed);
        rt.stats.active.fetch_add(1, Ordering::AcqRel);
        rt.metrics.active.inc();
        let cx = Arc::new(ConnCtx {
            id: rt.next_id(),
            client,
            started: Instant::now(),
            snap,
            rt: rt.clone(),
        });
        tokio::spawn(front::serve_client(stream, cx));
    }
}
