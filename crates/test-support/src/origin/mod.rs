//! Real origin servers on loopback: HTTPS (tokio-rustls, ALPN h2 + http/1.1) or plain HTTP,
//! serving HTTP/1.1 and HTTP/2 with hyper, recording what they saw for assertions.
//!
//! Routes: `/` and anything unknown → `hello from <name>`; `/bytes/N` → N
//! bytes of [`pattern`], streamed; `/echo` → the request body, streamed back; `/headers` →
//! JSON of the request headers; `/ws` → WebSocket echo (HTTP/1.1 Upgrade).
//!
//! Each origin runs on its own thread with its own tokio runtime, so a test may block its own
//! thread (curl, a child process) without starving the server. Dropping the origin stops it and
//! closes every connection. Misbehaving modes ([`Misbehave`]) follow the security matrix's
//! `fakeup.py` (Appendix E).

mod misbehave;
mod routes;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::pki::Leaf;

pub use routes::{pattern, pattern_byte};

/// How an origin misbehaves (security matrix Appendix E); `Misbehave::None` serves normally.
///
/// Modes that answer with hand-written HTTP/1.1 bytes default the origin's ALPN to
/// `["http/1.1"]` (an h2 preface would not parse), unless [`OriginBuilder::alpn`] says
/// otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Misbehave {
    /// Serve the routes normally.
    #[default]
    None,
    /// Accept TCP and then never read nor write (`stall-tcp`).
    StallAfterAccept,
    /// Read the ClientHello (or request) and never answer (`stall-tls`).
    StallInHandshake,
    /// Finish the TLS handshake, read the request head, never answer.
    StallAfterRequest,
    /// Reply with plaintext `HTTP/1.1 400` bytes right after accept, even on a TLS origin,
    /// then close (`garbage`).
    GarbagePlaintext,
    /// Announce `Content-Length: 1048576`, send half of it, then reset the TCP connection
    /// (`rst-mid`).
    ResetMidBody,
    /// Announce `Content-Length: 1048576`, send half of it, then FIN without TLS close_notify
    /// (`fin-mid`).
    CloseMidBody,
    /// After the request head, write exactly these bytes and close (TLS close_notify, FIN):
    /// for `cl-te`, `dup-cl`, `big-header` and other malformed responses.
    RawResponse(Vec<u8>),
}

/// One request as the origin received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path and query, e.g. `/bytes/10?x=1`.
    pub path: String,
    /// The request target as parsed (absolute-form shows here as `http://host/path`).
    pub uri: String,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub version: String,
    /// The `Host` header, else the URI authority (HTTP/2 `:authority`).
    pub host: Option<String>,
    /// Every header in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
}

/// What one TLS handshake looked like from the origin's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenHandshake {
    /// SNI the client sent.
    pub sni: Option<String>,
    /// ALPN protocol agreed.
    pub alpn: Option<String>,
    /// TLS version, e.g. `TLSv1_3`.
    pub version: Option<String>,
}

/// A running origin; dropping it stops it.
pub struct TestOrigin {
    name: String,
    addr: SocketAddr,
    tls: bool,
    seen: Shared,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// Options for a [`TestOrigin`]; `TestOrigin::builder()` starts one.
#[derive(Clone, Debug, Default)]
pub struct OriginBuilder {
    name: Option<String>,
    leaf: Option<Leaf>,
    alpn: Option<Vec<String>>,
    misbehave: Misbehave,
    leaf_only: bool,
    ip: Option<Ipv4Addr>,
}

/// Everything the origin records, shared by its tasks.
#[derive(Debug, Default)]
struct Seen {
    connections: usize,
    tls_failures: usize,
    handshakes: Vec<SeenHandshake>,
    requests: Vec<SeenRequest>,
}

type Shared = Arc<Mutex<Seen>>;

/// Per-origin context handed to every connection task.
struct Ctx {
    name: String,
    tls: Option<TlsAcceptor>,
    misbehave: Misbehave,
    seen: Shared,
}

// === impl TestOrigin ===

impl TestOrigin {
    /// An HTTPS origin serving `leaf`'s chain, ALPN `["h2", "http/1.1"]`, named after the
    /// leaf's first name.
    pub async fn https(leaf: &Leaf) -> Self {
        Self::builder().tls(leaf).start().await
    }

    /// A plain HTTP origin named `origin` (HTTP/1.1, and HTTP/2 with prior knowledge).
    pub async fn http() -> Self {
        Self::builder().start().await
    }

    /// Starts building an origin with options.
    pub fn builder() -> OriginBuilder {
        OriginBuilder::default()
    }

    /// The bound address (127.0.0.1 unless [`OriginBuilder::bind_ip`] said otherwise).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The name in `hello from <name>` and `x-origin`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `https://<host>:<port><path>` (or `http://` for a plain origin): `host` is the name the
    /// client should use (resolved to this origin by `--resolve` or the gateway's hosts file).
    pub fn url(&self, host: &str, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}{path}", self.addr.port())
    }

    /// curl's `--resolve host:port:127.0.0.1` value pointing `host` at this origin.
    pub fn resolve_arg(&self, host: &str) -> String {
        format!("{host}:{}:{}", self.addr.port(), self.addr.ip())
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen().requests.clone()
    }

    /// Completed TLS handshakes.
    pub fn tls_handshakes(&self) -> usize {
        self.seen().handshakes.len()
    }

    /// TLS handshakes that failed (the client, i.e. the gateway, rejected us or vice versa).
    pub fn tls_failures(&self) -> usize {
        self.seen().tls_failures
    }

    /// Accepted TCP connections.
    pub fn connections(&self) -> usize {
        self.seen().connections
    }

    /// The ALPN protocol of each completed handshake.
    pub fn alpn_seen(&self) -> Vec<Option<String>> {
        self.seen()
            .handshakes
            .iter()
            .map(|h| h.alpn.clone())
            .collect()
    }

    /// The SNI of each completed handshake.
    pub fn sni_seen(&self) -> Vec<Option<String>> {
        self.seen()
            .handshakes
            .iter()
            .map(|h| h.sni.clone())
            .collect()
    }

    /// Every completed handshake (SNI, ALPN, TLS version).
    pub fn handshakes(&self) -> Vec<SeenHandshake> {
        self.seen().handshakes.clone()
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().expect("origin state lock poisoned")
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Joining makes "dropped" mean "port closed", so a test can assert refusals.
            let _ = thread.join();
        }
    }
}

// === impl OriginBuilder ===

impl OriginBuilder {
    /// Serve TLS with this leaf's chain (default: plain HTTP).
    pub fn tls(mut self, leaf: &Leaf) -> Self {
        self.leaf = Some(leaf.clone());
        self
    }

    /// The origin's name (default: the leaf's first name, or `origin`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// ALPN protocols offered, in preference order (default `["h2", "http/1.1"]`; an empty
    /// list means no ALPN extension in the ServerHello).
    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = Some(protocols.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    /// Misbehave this way on every connection.
    pub fn misbehave(mut self, mode: Misbehave) -> Self {
        self.misbehave = mode;
        self
    }

    /// Send the leaf alone, without its intermediate (an "incomplete chain" upstream).
    pub fn leaf_only(mut self) -> Self {
        self.leaf_only = true;
        self
    }

    /// Bind this loopback address instead of 127.0.0.1 (e.g. 127.0.1.7); must be in
    /// 127.0.0.0/8.
    pub fn bind_ip(mut self, ip: Ipv4Addr) -> Self {
        assert!(
            ip.is_loopback(),
            "test origins bind loopback only, not {ip}"
        );
        self.ip = Some(ip);
        self
    }

    /// Binds and starts serving (async flavour of [`Self::start_blocking`]).
    pub fn start(self) -> impl Future<Output = TestOrigin> {
        std::future::ready(self.start_blocking())
    }

    /// Binds port 0 and starts serving on a dedicated thread; usable outside any runtime.
    pub fn start_blocking(self) -> TestOrigin {
        let name = self.name.clone().unwrap_or_else(|| match &self.leaf {
            Some(leaf) => leaf
                .names
                .first()
                .cloned()
                .unwrap_or_else(|| "origin".into()),
            None => "origin".into(),
        });
        let ip = self.ip.unwrap_or(Ipv4Addr::LOCALHOST);
        let listener = std::net::TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("origin {name}: bind {ip}:0: {e}"));
        listener
            .set_nonblocking(true)
            .expect("set origin listener non-blocking");
        let addr = listener.local_addr().expect("origin local addr");
        let seen = Shared::default();
        let ctx = Arc::new(Ctx {
            name: name.clone(),
            tls: self.acceptor(),
            misbehave: self.misbehave.clone(),
            seen: seen.clone(),
        });
        let (stop, stopped) = oneshot::channel();
        let thread = thread::Builder::new()
            .name(format!("origin-{name}"))
            .spawn(move || run(listener, ctx, stopped))
            .expect("spawn origin thread");
        TestOrigin {
            name,
            addr,
            tls: self.leaf.is_some(),
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn acceptor(&self) -> Option<TlsAcceptor> {
        let leaf = self.leaf.as_ref()?;
        let default_alpn: &[&str] = match self.misbehave {
            Misbehave::None => &["h2", "http/1.1"],
            _ => &["http/1.1"],
        };
        let alpn: Vec<&str> = match &self.alpn {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => default_alpn.to_vec(),
        };
        let mut leaf = leaf.clone();
        if self.leaf_only {
            leaf.chain_der.truncate(1);
        }
        Some(TlsAcceptor::from(Arc::new(leaf.server_config(&alpn))))
    }
}

// === the server ===

/// The origin thread: a current-thread runtime serving until `stopped` fires; dropping the
/// runtime then drops every connection task, closing their sockets.
fn run(listener: std::net::TcpListener, ctx: Arc<Ctx>, stopped: oneshot::Receiver<()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build origin runtime");
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("register origin listener");
        tokio::select! {
            () = accept_loop(listener, ctx) => {}
            _ = stopped => {}
        }
    });
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>) {
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            // EMFILE and friends: back off rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        lock(&ctx.seen).connections += 1;
        tokio::spawn(handle_connection(ctx.clone(), tcp));
    }
}

async fn handle_connection(ctx: Arc<Ctx>, tcp: TcpStream) {
    // The modes that misbehave before TLS keep the stream and never give it back.
    let Some(tcp) = misbehave::before_tls(&ctx.misbehave, tcp).await else {
        return;
    };
    let Some(acceptor) = ctx.tls.clone() else {
        return serve_http(ctx, tcp).await;
    };
    match acceptor.accept(tcp).await {
        Ok(tls) => {
            let (_, conn) = tls.get_ref();
            let handshake = SeenHandshake {
                sni: conn.server_name().map(str::to_owned),
                alpn: conn
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
                version: conn.protocol_version().map(|v| format!("{v:?}")),
            };
            lock(&ctx.seen).handshakes.push(handshake);
            serve_http(ctx, tls).await;
        }
        Err(_) => lock(&ctx.seen).tls_failures += 1,
    }
}

/// HTTP on an established (plain or TLS) stream: hyper for normal service, hand-written bytes
/// for the misbehaving modes.
async fn serve_http<S>(ctx: Arc<Ctx>, io: S)
where
    S: misbehave::Conn,
{
    if ctx.misbehave != Misbehave::None {
        return misbehave::after_tls(&ctx, io).await;
    }
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let service = hyper::service::service_fn(move |req| routes::handle(ctx.clone(), req));
    // Connection errors (client resets, the gateway giving up) are part of what tests provoke.
    let _ = builder
        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

fn lock(seen: &Shared) -> MutexGuard<'_, Seen> {
    seen.lock().expect("origin state lock poisoned")
}
