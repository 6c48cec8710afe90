//! `sluice run`: load everything, bind, print the ready line, serve until SIGTERM/SIGINT,
//! reload on SIGHUP (a bad new config is logged and the old one keeps serving).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sluice_policy::config::{Config, LogTarget};
use sluice_proxy::log::AccessLog;
use sluice_proxy::pinning::Pinning;
use sluice_proxy::resolve::{load_hosts, Dialer};
use sluice_proxy::{Runtime, Snapshot};
use sluice_store::{Store, WriterHandle};
use sluice_tls::mint::Minter;
use sluice_tls::verify::UpstreamTls;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::{load, Args, Failure};

/// The event store's file name inside the data dir.
pub(crate) const STORE_FILE: &str = "sluice.db";

pub(crate) fn run(args: &Args) -> Result<(), Failure> {
    init_tracing();
    // The process holds the CA private key: never write it into a core dump (matrix CK-02).
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::CORE, 0, 0) {
        tracing::warn!(error = %e, "could not disable core dumps");
    }
    let config = load::config(args)?;
    for w in &config.warnings {
        tracing::warn!(warning = %w, "configuration");
    }
    let data_dir = load::data_dir(args)?;
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| Failure::runtime(format!("data dir {}: {e}", data_dir.display())))?;
    let ca = Arc::new(load::ca(&config, &data_dir)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("tokio runtime: {e}")))?;
    runtime.block_on(serve(args, config, ca, &data_dir))
}

async fn serve(
    args: &Args,
    config: Config,
    ca: Arc<sluice_tls::ca::Ca>,
    data_dir: &Path,
) -> Result<(), Failure> {
    let mut proxies = Vec::new();
    for addr in &config.proxy.listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::runtime(format!("proxy.listen {addr}: {e}")))?;
        proxies.push(l);
    }
    let admin = TcpListener::bind(config.admin.listen)
        .await
        .map_err(|e| Failure::runtime(format!("admin.listen {}: {e}", config.admin.listen)))?;
    let mut own: Vec<SocketAddr> = proxies.iter().filter_map(|l| l.local_addr().ok()).collect();
    let admin_addr = admin
        .local_addr()
        .map_err(|e| Failure::runtime(e.to_string()))?;
    own.push(admin_addr);
    let log_path = match &config.access_log {
        LogTarget::Stdout => None,
        LogTarget::File(p) => Some(p.clone()),
    };
    let log = AccessLog::start(log_path.as_deref())
        .map_err(|e| Failure::runtime(format!("log.access: {e}")))?;
    let snapshot = build_snapshot(config, &own)?;
    let minter = Arc::new(Minter::new(ca.clone(), snapshot.config.ca.leaf_cache));
    let (pinning, writer) = open_store(data_dir)?;
    let rt = Runtime::new(snapshot, minter, log, Some(pinning));
    tokio::spawn(sluice_proxy::pinning::follow(rt.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let proxy_addrs: Vec<String> = proxies
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    for l in proxies {
        tokio::spawn(sluice_proxy::serve(l, rt.clone(), stop_rx.clone()));
    }
    let router = admin_router(&rt, data_dir, &proxy_addrs, admin_addr)?;
    let mut admin_stop = stop_rx.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = admin_stop.changed().await;
        };
        // Connect info: the admin guard rate-limits failed token attempts per client address.
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(admin, service)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
    let ca_path = ca.cert_path().display().to_string();
    eprintln!(
        "sluice ready proxy={} admin={admin_addr} ca={ca_path}",
        proxy_addrs.join(",")
    );
    eprintln!(
        "try: curl --proxy http://{} --cacert {ca_path} https://example.com/",
        proxy_addrs.first().map_or("127.0.0.1:3128", String::as_str)
    );
    wait_for_signals(args, &rt, &own).await;
    let _ = stop_tx.send(true);
    let grace = rt.snapshot.load().config.proxy.timeouts.shutdown_grace;
    if tokio::time::timeout(grace, rt.drained()).await.is_err() {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    if let Some(p) = &rt.pinning {
        let _ = p.sink.flush();
    }
    drop(writer);
    Ok(())
}

/// The admin router with its token, catalog and audit trail. A listener on a non-loopback
/// address needs a token file chosen by the administrator (security matrix AD-01): a token
/// generated into the data dir is fine for a laptop, not for an exposed port.
fn admin_router(
    rt: &Arc<Runtime>,
    data_dir: &Path,
    proxy_addrs: &[String],
    admin_addr: SocketAddr,
) -> Result<axum::Router, Failure> {
    let config = rt.snapshot.load().config.clone();
    if !config.admin.listen.ip().is_loopback() && config.admin.token_file.is_none() {
        return Err(Failure::usage(format!(
            "admin.listen {} is not a loopback address: set admin.token_file to a file holding \
             the admin token (at least {} characters), or listen on 127.0.0.1",
            config.admin.listen,
            sluice_admin::token::MIN_LEN
        )));
    }
    let (token, token_source) =
        sluice_admin::Token::load_or_create(config.admin.token_file.as_deref(), data_dir)
            .map_err(|e| Failure::runtime(format!("admin token: {e}")))?;
    let catalog = Arc::new(load::catalog(&config)?);
    let settings = sluice_admin::Settings {
        token,
        token_source,
        proxy_addrs: proxy_addrs.iter().filter_map(|a| a.parse().ok()).collect(),
        admin_addr: Some(admin_addr),
        audit_file: Some(data_dir.join(sluice_admin::audit::AUDIT_FILE)),
    };
    let state = sluice_admin::AdminState::new(rt.clone(), catalog, settings);
    Ok(sluice_admin::router(state))
}

/// The event store in the data dir and its observation writer.
fn open_store(data_dir: &Path) -> Result<(Pinning, WriterHandle), Failure> {
    let path = data_dir.join(STORE_FILE);
    let store = Store::open(&path).map_err(|e| Failure::runtime(format!("event store: {e}")))?;
    let (sink, writer) = store
        .writer(4096)
        .map_err(|e| Failure::runtime(format!("event store: {e}")))?;
    Ok((
        Pinning {
            store: Arc::new(store),
            sink,
        },
        writer,
    ))
}

/// Compiles a snapshot from a config (used at start and on reload).
fn build_snapshot(config: Config, own: &[SocketAddr]) -> Result<Snapshot, Failure> {
    let catalog = load::catalog(&config)?;
    let engine = load::engine(&config, &catalog)?;
    for w in load::references(&config, &catalog, &engine)? {
        tracing::warn!(warning = %w, "configuration");
    }
    let hosts = load_hosts(config.upstream.hosts_file.as_deref())
        .map_err(|e| Failure::usage(format!("upstream.hosts_file: {e}")))?;
    let upstream = UpstreamTls::new(&config.upstream.extra_roots)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let dialer = Dialer::new(
        hosts,
        config.upstream.allow_private.clone(),
        own.to_vec(),
        config.proxy.timeouts.connect,
    )
    .with_dns(
        config.upstream.dns_servers.clone(),
        config.upstream.dns_timeout,
    );
    let auth = load::auth(&config)?;
    let inspector = sluice_proxy::inspect::Inspector::build(&config).map_err(Failure::usage)?;
    let (config, engine) = (Arc::new(config), Arc::new(engine));
    Ok(Snapshot::new(
        config,
        engine,
        Arc::new(dialer),
        Arc::new(upstream),
        auth,
        inspector,
    ))
}

async fn wait_for_signals(args: &Args, rt: &Arc<Runtime>, own: &[SocketAddr]) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    // A changed config file reloads like SIGHUP (checked every 2 s by modification time).
    let mut watch = tokio::time::interval(std::time::Duration::from_secs(2));
    let mut stamp = config_stamp(args);
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => reload(args, rt, own),
            // logrotate: the log file was moved; write to a fresh one from the next record.
            _ = usr1.recv() => rt.log.reopen(),
            _ = watch.tick() => {
                let now = config_stamp(args);
                if now != stamp {
                    stamp = now;
                    reload(args, rt, own);
                }
            }
        }
    }
}

fn config_stamp(args: &Args) -> Option<std::time::SystemTime> {
    let path = args.config.as_ref()?;
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn reload(args: &Args, rt: &Arc<Runtime>, own: &[SocketAddr]) {
    let result_label = |ok| sluice_proxy::metrics::ResultLabels {
        result: if ok { "ok" } else { "failed" },
    };
    let result = load::config(args).and_then(|c| build_snapshot(c, own));
    match result {
        Ok(snapshot) => {
            rt.snapshot.store(Arc::new(snapshot));
            rt.metrics.reloads.get_or_create(&result_label(true)).inc();
            tracing::warn!("configuration reloaded");
            eprintln!("sluice reloaded");
        }
        Err(f) => {
            rt.metrics.reloads.get_or_create(&result_label(false)).inc();
            tracing::error!(error = %f.message, "reload rejected; the previous configuration keeps serving");
            eprintln!("sluice reload failed: {}", f.message);
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
