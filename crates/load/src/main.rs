//! `sluice-load`: the load generator of sluice's benchmarks (BENCHMARKS.md, `scripts/bench`).
//!
//! It speaks through an explicit HTTP proxy the way a browser does (`CONNECT host:port`, then
//! TLS with SNI = host, then HTTP/1.1 or h2 inside the tunnel), or straight to the origin with
//! `--direct` for the baseline row, and reports requests, errors, req/s, body MB/s and latency
//! percentiles. `sluice-load origin` is the matching HTTPS origin (`/1k`, `/1m`).
//!
//! ```text
//! sluice-load origin --ca-out /tmp/origin-ca.pem
//! sluice-load --proxy 127.0.0.1:3128 --url https://bench.test:PORT/1k \
//!     --cacert CA.pem -c 32 --duration 10s --mode keepalive [--json]
//! ```
//!
//! Not a general HTTP client: GET only, no redirects, no request bodies.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use http::{HeaderValue, Uri};

mod client;
mod origin;
mod run;
mod stats;

use run::{Budget, Mode, Plan};

/// Exit status for bad flags (sysexits `EX_USAGE`).
const EX_USAGE: i32 = 64;

/// Load generator for sluice: CONNECT + TLS + HTTP/1.1 or h2 through a proxy, or direct.
#[derive(Parser, Debug)]
#[command(
    name = "sluice-load",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve `/1k` and `/1m` over HTTPS (HTTP/1.1 and h2) for the benchmark.
    Origin(origin::OriginArgs),
}

/// Options of a load run.
#[derive(Args, Debug)]
struct LoadArgs {
    /// The URL to fetch: `https://host[:port]/path`.
    #[arg(long, required = true)]
    url: Option<String>,
    /// The explicit proxy (`127.0.0.1:3128`); each connection starts with `CONNECT host:port`.
    #[arg(long, required_unless_present = "direct", conflicts_with = "direct")]
    proxy: Option<SocketAddr>,
    /// No proxy: TCP + TLS straight to the origin (the baseline row).
    #[arg(long)]
    direct: bool,
    /// `name:IP`: the address `--direct` connects to for the URL's host (else DNS).
    #[arg(long)]
    resolve: Option<String>,
    /// The only CA trusted for the server certificate (PEM).
    #[arg(long, required = true)]
    cacert: Option<PathBuf>,
    /// Concurrent workers (`keepalive`, `newconn`) or connections (`h2`).
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// How long to run (`10s`, `1m`); ignored when `-n` is given.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop after this many requests instead of after `--duration`.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// `keepalive`, `newconn` (a new connection per request) or `h2`.
    #[arg(long, value_enum, default_value_t = Mode::Keepalive)]
    mode: Mode,
    /// Concurrent streams per connection in `h2` mode.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Disable TLS session resumption: every new connection does a full handshake.
    #[arg(long)]
    no_resume: bool,
    /// Runtime worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    threads: Option<usize>,
    /// Requests per second over all workers (`newconn` and `keepalive`), each worker starting
    /// its requests on a fixed schedule: an open-loop stream whose latency shows what other
    /// load does to it, rather than a closed loop that takes whatever CPU is left.
    #[arg(long)]
    rate: Option<f64>,
    /// Print one JSON object instead of the summary line.
    #[arg(long)]
    json: bool,
    /// Exit 1 if any request failed (default: only if none succeeded).
    #[arg(long)]
    strict: bool,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { EX_USAGE } else { 0 });
        }
    };
    let threads = match &cli.command {
        Some(Command::Origin(_)) => None,
        None => cli.load.threads,
    };
    let code = match runtime(threads).and_then(|rt| rt.block_on(dispatch(cli))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice-load: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// A current-thread runtime when one thread is all we get (no cross-thread wakeups), else a
/// multi-threaded one with one worker per CPU the process may use (`taskset` is respected).
fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let n = threads
        .or_else(|| std::thread::available_parallelism().ok().map(Into::into))
        .unwrap_or(1);
    let mut builder = if n <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(n);
        b
    };
    builder.enable_all().build().context("tokio runtime")
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Some(Command::Origin(args)) => origin::run(args).await.map(|()| 0),
        None => load(cli.load).await,
    }
}

async fn load(args: LoadArgs) -> anyhow::Result<i32> {
    let plan = plan(&args).await?;
    let report = plan.run().await?;
    if args.json {
        println!("{}", report.json());
    } else {
        println!("{}", report.summary());
    }
    let failed = report.stats.requests == 0 || (args.strict && report.stats.errors > 0);
    Ok(i32::from(failed))
}

/// Turns the flags into a [`Plan`]: parses the URL, resolves the origin, builds the TLS config.
async fn plan(args: &LoadArgs) -> anyhow::Result<Plan> {
    // clap makes both required; these only guard against a change there.
    let (Some(url), Some(cacert)) = (&args.url, &args.cacert) else {
        bail!("--url and --cacert are required");
    };
    let url: Uri = url.parse().with_context(|| format!("--url {url:?}"))?;
    if url.scheme_str() != Some("https") {
        bail!("--url must be https://");
    }
    let Some(authority) = url.authority().cloned() else {
        bail!("--url has no host");
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(443);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let route = match args.proxy {
        Some(proxy) => client::Route::Proxy(proxy),
        None => client::Route::Direct(origin_addr(host, port, args.resolve.as_deref()).await?),
    };
    let alpn: &[&[u8]] = match args.mode {
        Mode::H2 => &[b"h2"],
        Mode::Keepalive | Mode::Newconn => &[b"http/1.1"],
    };
    let tls = client::tls_config(cacert, alpn, args.no_resume)?;
    if args.concurrency == 0 || args.streams == 0 {
        bail!("-c and --streams must be at least 1");
    }
    let deadline = match args.requests {
        Some(_) => None,
        None => Some(Instant::now() + args.duration),
    };
    Ok(Plan {
        dialer: client::Dialer::new(route, host, port, tls)?,
        mode: args.mode,
        connections: args.concurrency,
        streams: if args.mode == Mode::H2 {
            args.streams
        } else {
            1
        },
        budget: Budget::new(deadline, args.requests),
        path: path.parse().context("URL path")?,
        absolute: url.clone(),
        host_header: HeaderValue::from_str(authority.as_str()).context("Host header")?,
        errors_printed: AtomicU64::new(0),
        pace: args
            .rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(args.concurrency.max(1) as f64 / r)),
    })
}

/// Where `--direct` connects: `--resolve name:IP`, an IP literal, or DNS. (Through a proxy the
/// proxy resolves the name.)
async fn origin_addr(host: &str, port: u16, resolve: Option<&str>) -> anyhow::Result<SocketAddr> {
    if let Some(spec) = resolve {
        let Some((name, ip)) = spec.rsplit_once(':').filter(|(n, _)| !n.contains(':')) else {
            bail!("--resolve {spec:?}: want name:IP");
        };
        let ip: IpAddr = ip.parse().with_context(|| format!("--resolve {spec:?}"))?;
        if !name.eq_ignore_ascii_case(host) {
            bail!("--resolve names {name:?} but the URL's host is {host:?}");
        }
        return Ok(SocketAddr::new(ip, port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}
