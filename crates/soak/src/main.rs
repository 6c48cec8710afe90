//! `sluice-soak`: the clients and the origin of `scripts/soak` (security matrix section 6:
//! RL-01…RL-04, FT-01, FT-02). Not part of CI. Every client mode prints one line
//! `soak KEY=VALUE ...` on stdout with its counts, for the script to parse.
//!
//! ```text
//! sluice-soak origin --ca-out ca.pem                 # /1k /big?n= /rst?n= /fin?n= /chunkrst?n= /up
//! sluice-soak hold    --proxy P --host bypass.test --port N --cacert ca.pem -n 10000 --hold 30s
//! sluice-soak stall   --proxy P --host bench.test --port N -n 2000          # CONNECT, no ClientHello
//! sluice-soak dribble --proxy P --host bench.test --port N -n 2000 --every 2s
//! sluice-soak storm   --proxy P --port N --cacert sluice-ca.pem -n 5000 --domain wild.test
//! sluice-soak fault   --proxy P --host bench.test --port N --cacert sluice-ca.pem -n 300
//! sluice-soak abort   --proxy P --host bench.test --port N --cacert sluice-ca.pem -n 300
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Parser, Debug)]
#[command(name = "sluice-soak")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// HTTPS origin with large, reset and truncated bodies (leaf covers *.wild.test too).
    Origin(OriginArgs),
    /// RL-01: N tunnels (CONNECT + TLS handshake through), held, then closed.
    Hold(ClientArgs),
    /// RL-02: N CONNECTs that never send a ClientHello; reports when the gateway closes them.
    Stall(ClientArgs),
    /// RL-02: N request heads dribbled to the proxy port one byte at a time.
    Dribble(ClientArgs),
    /// RL-04: N handshakes with unique SNIs `h<i>.<domain>` through the decrypting gateway.
    Storm(ClientArgs),
    /// FT-01: requests whose upstream resets or closes mid-body; the client must see an abort.
    Fault(ClientArgs),
    /// FT-02: clients aborting at a random stage.
    Abort(ClientArgs),
}

#[derive(Args, Debug)]
struct OriginArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long)]
    ca_out: PathBuf,
    #[arg(long = "name", default_values_t = ["bench.test".to_owned(), "bypass.test".to_owned(), "*.wild.test".to_owned(), "localhost".to_owned()])]
    names: Vec<String>,
}

#[derive(Args, Debug, Clone)]
struct ClientArgs {
    #[arg(long)]
    proxy: SocketAddr,
    #[arg(long, default_value = "bench.test")]
    host: String,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    cacert: Option<PathBuf>,
    #[arg(short = 'n', default_value_t = 100)]
    n: usize,
    /// Connection attempts in flight at once.
    #[arg(short = 'c', default_value_t = 200)]
    concurrency: usize,
    /// hold: how long every tunnel is held after all were attempted.
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    hold: Duration,
    /// dribble: delay between bytes.
    #[arg(long, default_value = "2s", value_parser = parse_dur)]
    every: Duration,
    /// stall/dribble: give up waiting for the gateway to close after this long.
    #[arg(long, default_value = "60s", value_parser = parse_dur)]
    max_wait: Duration,
    /// storm: the wildcard domain.
    #[arg(long, default_value = "wild.test")]
    domain: String,
    /// storm: first index (so cycles use fresh names).
    #[arg(long, default_value_t = 0)]
    start: usize,
    /// storm: every connection uses the one name `h<start>.<domain>` (singleflight check).
    #[arg(long)]
    same: bool,
    /// storm: new connections per second (0: as fast as `-c` allows).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    let (num, mul) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>()
        .map(|v| Duration::from_secs_f64(v * mul))
        .map_err(|e| e.to_string())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Origin(a) => origin(a).await,
            Cmd::Hold(a) => hold(a).await,
            Cmd::Stall(a) => stall(a).await,
            Cmd::Dribble(a) => dribble(a).await,
            Cmd::Storm(a) => storm(a).await,
            Cmd::Fault(a) => fault(a).await,
            Cmd::Abort(a) => abort(a).await,
        }
    })
}

// --- origin ----------------------------------------------------------------------------------

async fn origin(a: OriginArgs) -> anyhow::Result<()> {
    let (chain, key) = generate(&a.ca_out, &a.names)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(a.listen).await?;
    println!("origin ready addr={}", listener.local_addr()?);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = serve(tls).await;
            }
        });
    }
}

fn query_n(path: &str, default: u64) -> u64 {
    path.split_once("n=")
        .and_then(|(_, v)| v.split('&').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn serve(mut s: tokio_rustls::server::TlsStream<TcpStream>) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut s, &mut buf).await? else {
            return Ok(());
        };
        let line = head.lines().next().unwrap_or("").to_owned();
        let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
        let route = path.split('?').next().unwrap_or("/");
        let n = query_n(&path, 1024);
        let chunk = vec![b'x'; 64 * 1024];
        match route {
            "/1k" => {
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1024\r\n\r\n")
                    .await?;
                s.write_all(&chunk[..1024]).await?;
            }
            "/big" => {
                s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n").as_bytes())
                    .await?;
                let mut left = n;
                while left > 0 {
                    let k = left.min(chunk.len() as u64) as usize;
                    s.write_all(&chunk[..k]).await?;
                    left -= k as u64;
                }
            }
            "/up" => {
                let cl: u64 = header(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut got = buf.len() as u64;
                buf.clear();
                let mut rb = vec![0u8; 64 * 1024];
                while got < cl {
                    let k = s.read(&mut rb).await?;
                    if k == 0 {
                        return Ok(());
                    }
                    got += k as u64;
                }
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await?;
            }
            "/rst" | "/fin" => {
                s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n").as_bytes())
                    .await?;
                let mut left = n / 2;
                while left > 0 {
                    let k = left.min(chunk.len() as u64) as usize;
                    s.write_all(&chunk[..k]).await?;
                    left -= k as u64;
                }
                s.flush().await?;
                return end(s, route == "/rst").await;
            }
            "/chunkrst" => {
                s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await?;
                let half = (n / 2) as usize;
                s.write_all(format!("{half:x}\r\n").as_bytes()).await?;
                s.write_all(&vec![b'c'; half]).await?;
                s.write_all(b"\r\n").await?;
                s.flush().await?;
                return end(s, true).await;
            }
            _ => {
                s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .await?
            }
        }
        s.flush().await?;
    }
}

/// Ends a connection abruptly: RST (SO_LINGER 0, no close_notify) or a bare FIN.
async fn end(s: tokio_rustls::server::TlsStream<TcpStream>, rst: bool) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (tcp, _) = s.into_inner();
    if rst {
        #[allow(deprecated)]
        let _ = tcp.set_linger(Some(Duration::ZERO));
        drop(tcp);
    } else {
        let mut tcp = tcp;
        let _ = tcp.shutdown().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads one head (up to CRLFCRLF); bytes after it stay in `buf`. None on a clean EOF.
async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Option<String>> {
    let mut rb = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            buf.drain(..i + 4);
            return Ok(Some(head));
        }
        if buf.len() > 65536 {
            bail!("head too large");
        }
        let k = s.read(&mut rb).await?;
        if k == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            bail!("eof inside head");
        }
        buf.extend_from_slice(&rb[..k]);
    }
}

fn generate(
    ca_out: &Path,
    names: &[String],
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = cn(&format!("sluice-soak origin root {}", std::process::id()));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    std::fs::write(ca_out, ca_cert.pem()).with_context(|| format!("{}", ca_out.display()))?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::new(names.to_vec())?;
    p.distinguished_name = cn("sluice-soak origin");
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let leaf = p.signed_by(&key, &issuer)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((vec![leaf.der().clone()], key_der))
}

fn cn(s: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, s);
    d
}

// --- client helpers --------------------------------------------------------------------------

fn connector(cacert: Option<&Path>) -> anyhow::Result<TlsConnector> {
    let path = cacert.context("--cacert is required for this mode")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(path)? {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(cfg)))
}

/// TCP to the proxy + `CONNECT host:port`; Ok once a 200 came back.
async fn tunnel(proxy: SocketAddr, host: &str, port: u16) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    s.write_all(
        format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").as_bytes(),
    )
    .await?;
    // Byte by byte so nothing after the head is consumed.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            bail!("proxy closed during CONNECT");
        }
        head.push(b[0]);
        if head.len() > 8192 {
            bail!("CONNECT reply too large");
        }
    }
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        bail!(
            "CONNECT: {}",
            String::from_utf8_lossy(&head).lines().next().unwrap_or("")
        );
    }
    Ok(s)
}

async fn tls(
    c: &TlsConnector,
    tcp: TcpStream,
    host: &str,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned())?;
    Ok(c.connect(name, tcp).await?)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Waits until the peer closes `s` (read returns 0 or an error); the time it took, or None
/// after `max`.
async fn wait_closed<S: AsyncRead + Unpin>(s: &mut S, max: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut b = [0u8; 1024];
    let r = tokio::time::timeout(max, async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.ok().map(|()| t0.elapsed())
}

fn report_closes(mode: &str, n: usize, fails: u64, mut closes: Vec<f64>, open: u64) {
    let closed = closes.len();
    let (min, p50, max) = (
        pct(&mut closes, 0.0),
        pct(&mut closes, 0.5),
        pct(&mut closes, 1.0),
    );
    println!(
        "soak mode={mode} n={n} setup_failed={fails} closed={closed} still_open={open} close_min_s={min:.2} close_p50_s={p50:.2} close_max_s={max:.2}"
    );
}

// --- modes -----------------------------------------------------------------------------------

async fn hold(a: ClientArgs) -> anyhow::Result<()> {
    let c = connector(a.cacert.as_deref())?;
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let ok = Arc::new(AtomicU64::new(0));
    let fail = Arc::new(AtomicU64::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(a.n);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let last_err = Arc::new(std::sync::Mutex::new(String::new()));
    for _ in 0..a.n {
        let (c, sem, ok, fail, release, done_tx, a2, last_err) = (
            c.clone(),
            sem.clone(),
            ok.clone(),
            fail.clone(),
            release.clone(),
            done_tx.clone(),
            a.clone(),
            last_err.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let r = tokio::time::timeout(Duration::from_secs(30), async {
                let t = tunnel(a2.proxy, &a2.host, a2.port).await?;
                tls(&c, t, &a2.host).await
            })
            .await;
            drop(permit);
            let conn = match r {
                Ok(Ok(s)) => {
                    ok.fetch_add(1, Relaxed);
                    Some(s)
                }
                Ok(Err(e)) => {
                    fail.fetch_add(1, Relaxed);
                    if let Ok(mut l) = last_err.lock() {
                        *l = e.to_string();
                    }
                    None
                }
                Err(_) => {
                    fail.fetch_add(1, Relaxed);
                    None
                }
            };
            let waiter = release.notified();
            let _ = done_tx.send(());
            if conn.is_some() {
                waiter.await;
            }
            drop(conn);
        }));
    }
    drop(done_tx);
    for _ in 0..a.n {
        let _ = done_rx.recv().await;
    }
    let est = t0.elapsed().as_secs_f64();
    let err = last_err.lock().map(|s| s.clone()).unwrap_or_default();
    println!(
        "soak mode=hold phase=established n={} ok={} failed={} establish_s={est:.2} last_error={:?}",
        a.n,
        ok.load(Relaxed),
        fail.load(Relaxed),
        err
    );
    tokio::time::sleep(a.hold).await;
    release.notify_waiters();
    for t in tasks {
        let _ = t.await;
    }
    println!("soak mode=hold phase=closed");
    Ok(())
}

async fn stall(a: ClientArgs) -> anyhow::Result<()> {
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let mut tasks = Vec::new();
    for _ in 0..a.n {
        let (sem, a2) = (sem.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let t = tunnel(a2.proxy, &a2.host, a2.port).await;
            drop(permit);
            // The clock starts when the 200 arrived: the ClientHello deadline runs from there.
            let mut t = t.ok()?;
            Some(wait_closed(&mut t, a2.max_wait).await)
        }));
    }
    collect_closes("stall", a.n, tasks).await;
    Ok(())
}

async fn collect_closes(
    mode: &str,
    n: usize,
    tasks: Vec<tokio::task::JoinHandle<Option<Option<Duration>>>>,
) {
    let (mut fails, mut open, mut closes) = (0, 0, Vec::new());
    for t in tasks {
        match t.await.ok().flatten() {
            None => fails += 1,
            Some(None) => open += 1,
            Some(Some(d)) => closes.push(d.as_secs_f64()),
        }
    }
    report_closes(mode, n, fails, closes, open);
}

async fn dribble(a: ClientArgs) -> anyhow::Result<()> {
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let mut tasks = Vec::new();
    for _ in 0..a.n {
        let (sem, a2) = (sem.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let s = TcpStream::connect(a2.proxy).await;
            drop(permit);
            let s = s.ok()?;
            let head = format!(
                "CONNECT {h}:{p} HTTP/1.1\r\nHost: {h}:{p}\r\nUser-Agent: soak-dribble\r\nX-Pad: {pad}\r\n\r\n",
                h = a2.host,
                p = a2.port,
                pad = "a".repeat(200)
            );
            let (mut r, mut w) = s.into_split();
            let t0 = Instant::now();
            let writer = async {
                for b in head.as_bytes() {
                    if w.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(a2.every).await;
                }
                std::future::pending::<()>().await;
            };
            let res = tokio::select! {
                r = wait_closed(&mut r, a2.max_wait) => r,
                () = writer => None,
            };
            let _ = t0;
            Some(res)
        }));
    }
    collect_closes("dribble", a.n, tasks).await;
    Ok(())
}

async fn storm(a: ClientArgs) -> anyhow::Result<()> {
    let c = connector(a.cacert.as_deref())?;
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in a.start..a.start + a.n {
        if a.rate > 0.0 {
            let at = t0 + Duration::from_secs_f64((i - a.start) as f64 / a.rate);
            tokio::time::sleep_until(at.into()).await;
        }
        let (c, sem, a2) = (c.clone(), sem.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let idx = if a2.same { a2.start } else { i };
            let host = format!("h{idx}.{}", a2.domain);
            let t1 = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(20), async {
                let t = tunnel(a2.proxy, &host, a2.port).await?;
                let mut s = tls(&c, t, &host).await?;
                let _ = s.shutdown().await;
                anyhow::Ok(())
            })
            .await;
            match r {
                Ok(Ok(())) => Ok(t1.elapsed().as_secs_f64() * 1000.0),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timeout".to_owned()),
            }
        }));
    }
    let (mut lat, mut fails, mut err) = (Vec::new(), 0, String::new());
    for t in tasks {
        match t.await {
            Ok(Ok(ms)) => lat.push(ms),
            Ok(Err(e)) => {
                fails += 1;
                err = e;
            }
            Err(_) => fails += 1,
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let ok = lat.len();
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    println!(
        "soak mode=storm n={} ok={ok} failed={fails} elapsed_s={el:.2} handshakes_per_s={:.1} p50_ms={p50:.2} p99_ms={p99:.2} last_error={err:?}",
        a.n,
        ok as f64 / el
    );
    Ok(())
}

/// One request inside a decrypted (or end-to-end, for bypass) tunnel; reads until the
/// connection ends. Returns (status, declared length or -1 for chunked, body bytes, chunked
/// terminator seen, ended by error rather than clean EOF, timed out).
async fn one_fault(
    c: &TlsConnector,
    a: &ClientArgs,
    host: &str,
    path: &str,
) -> anyhow::Result<(String, i64, u64, bool, bool)> {
    let t = tunnel(a.proxy, host, a.port).await?;
    let mut s = tls(c, t, host).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    let head = read_head(&mut s, &mut buf)
        .await?
        .context("no response head")?;
    let status = head.split(' ').nth(1).unwrap_or("?").to_owned();
    let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let cl: i64 = if chunked {
        -1
    } else {
        header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-2)
    };
    let mut body = buf.clone();
    let mut rb = vec![0u8; 65536];
    let timed_out = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut rb).await {
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    body.extend_from_slice(&rb[..k]);
                    // A complete (clean) message: stop reading, the connection may stay open.
                    if cl >= 0 && body.len() as i64 >= cl {
                        return;
                    }
                    if chunked && body.ends_with(b"0\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await
    .is_err();
    let terminated = chunked && body.ends_with(b"0\r\n\r\n");
    Ok((status, cl, body.len() as u64, terminated, timed_out))
}

async fn fault(a: ClientArgs) -> anyhow::Result<()> {
    let c = connector(a.cacert.as_deref())?;
    let bypass_c = connector(
        std::env::var_os("SOAK_ORIGIN_CA")
            .map(PathBuf::from)
            .as_deref()
            .or(a.cacert.as_deref()),
    )?;
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let mut tasks = Vec::new();
    let kinds = ["rst", "fin", "chunkrst", "bypass-rst"];
    for i in 0..a.n {
        let kind = kinds[i % kinds.len()];
        let (c, bc, sem, a2) = (c.clone(), bypass_c.clone(), sem.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            let n = 262_144 + (i as u64 % 7) * 65_536;
            let r = match kind {
                "bypass-rst" => one_fault(&bc, &a2, "bypass.test", &format!("/rst?n={n}")).await,
                k => one_fault(&c, &a2, &a2.host, &format!("/{k}?n={n}")).await,
            };
            // A pass is an aborted transfer: fewer body bytes than declared and no chunked
            // terminator. A clean short body (or a complete one) is a failure.
            let pass = match &r {
                Ok((st, cl, got, term, _to)) => {
                    st == "200" && !term && (*cl < 0 || (*got as i64) < *cl)
                }
                Err(_) => false, // the tunnel or handshake failed: not the case under test
            };
            (kind, pass, format!("{r:?}"))
        }));
    }
    let (mut pass, mut fail, mut example) = (0, 0, String::new());
    let mut by = std::collections::BTreeMap::<&str, (u32, u32)>::new();
    for t in tasks {
        if let Ok((k, p, d)) = t.await {
            let e = by.entry(k).or_default();
            if p {
                pass += 1;
                e.0 += 1;
            } else {
                fail += 1;
                e.1 += 1;
                example = format!("{k}: {d}");
            }
        }
    }
    let per: Vec<String> = by
        .iter()
        .map(|(k, (p, f))| format!("{k}:{p}/{}", p + f))
        .collect();
    println!(
        "soak mode=fault n={} aborted_as_expected={pass} clean_or_wrong={fail} per_kind={} example_failure={example:?}",
        a.n,
        per.join(",")
    );
    Ok(())
}

async fn abort(a: ClientArgs) -> anyhow::Result<()> {
    let c = connector(a.cacert.as_deref())?;
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let mut tasks = Vec::new();
    const STAGES: [&str; 7] = [
        "mid-connect",
        "after-200",
        "mid-clienthello",
        "mid-handshake",
        "mid-request-head",
        "mid-upload",
        "mid-download",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    for _ in 0..a.n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let stage = (seed % STAGES.len() as u64) as usize;
        let rst = (seed >> 8) % 2 == 0;
        let (c, sem, a2) = (c.clone(), sem.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            let r =
                tokio::time::timeout(Duration::from_secs(20), abort_one(&c, &a2, stage, rst)).await;
            (stage, matches!(r, Ok(Ok(()))))
        }));
    }
    let mut counts = [0u32; STAGES.len()];
    let mut reached = 0;
    for t in tasks {
        if let Ok((s, ok)) = t.await {
            counts[s] += 1;
            if ok {
                reached += 1;
            }
        }
    }
    let per: Vec<String> = STAGES
        .iter()
        .zip(counts)
        .map(|(s, n)| format!("{s}:{n}"))
        .collect();
    println!(
        "soak mode=abort n={} reached_stage={reached} stages={}",
        a.n,
        per.join(",")
    );
    Ok(())
}

fn kill<T>(tcp: &TcpStream, rst: bool, _x: T) {
    if rst {
        #[allow(deprecated)]
        let _ = tcp.set_linger(Some(Duration::ZERO));
    }
}

async fn abort_one(
    c: &TlsConnector,
    a: &ClientArgs,
    stage: usize,
    rst: bool,
) -> anyhow::Result<()> {
    let host = a.host.as_str();
    if stage == 0 {
        let mut s = TcpStream::connect(a.proxy).await?;
        s.write_all(format!("CONNECT {host}:{}", a.port).as_bytes())
            .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        kill(&s, rst, ());
        return Ok(());
    }
    let mut t = tunnel(a.proxy, host, a.port).await?;
    match stage {
        1 => {
            kill(&t, rst, ());
            Ok(())
        }
        2 | 3 => {
            // A real ClientHello from rustls, sent in part (2) or whole (3, then the first
            // server flight is read and the client vanishes mid-handshake).
            let mut roots = rustls::RootCertStore::empty();
            if let Some(p) = &a.cacert {
                for cert in CertificateDer::pem_file_iter(p)? {
                    roots.add(cert?)?;
                }
            }
            let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let mut conn = rustls::ClientConnection::new(
                Arc::new(cfg),
                ServerName::try_from(host.to_owned())?,
            )?;
            let mut hello = Vec::new();
            conn.write_tls(&mut hello)?;
            if stage == 2 {
                t.write_all(&hello[..hello.len() / 2]).await?;
            } else {
                t.write_all(&hello).await?;
                let mut b = [0u8; 512];
                let _ = tokio::time::timeout(Duration::from_secs(5), t.read(&mut b)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            kill(&t, rst, ());
            Ok(())
        }
        _ => {
            let mut s = tls(c, t, host).await?;
            match stage {
                4 => {
                    s.write_all(format!("GET /1k HTTP/1.1\r\nHost: {host}\r\nX-A:").as_bytes())
                        .await?;
                }
                5 => {
                    s.write_all(
                        format!(
                            "POST /up HTTP/1.1\r\nHost: {host}\r\ncontent-length: 10485760\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await?;
                    let z = vec![0u8; 65536];
                    for _ in 0..8 {
                        s.write_all(&z).await?;
                    }
                }
                _ => {
                    s.write_all(
                        format!("GET /big?n=67108864 HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
                    )
                    .await?;
                    let mut b = vec![0u8; 65536];
                    let mut got = 0;
                    while got < 1 << 20 {
                        let k = s.read(&mut b).await?;
                        if k == 0 {
                            break;
                        }
                        got += k;
                    }
                }
            }
            s.flush().await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (tcp, _) = s.get_ref();
            kill(tcp, rst, ());
            Ok(())
        }
    }
}
