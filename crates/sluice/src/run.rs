//! `sluice run`: load everything, bind, print the ready line, serve until SIGTERM/SIGINT,
//! reload on SIGHUP (a bad new config is logged and the old one keeps serving).
//!
//! The policy list in force is the configuration file's `[[policy]]`, unless
//! `<data-dir>/policy.json` (written by `PUT /api/policy`) exists: then that list, at start and
//! on every reload ([`load::effective`]). A policy.json that does not load stops the start with
//! its name; on a reload it is rejected like a broken config file. [`Reloader`] is both the
//! reload and the admin API's way to build snapshots, under one lock.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use sluice_policy::config::{Config, LogTarget};
use sluice_proxy::log::AccessLog;
use sluice_proxy::pinning::Pinning;
use sluice_proxy::resolve::{load_hosts, Dialer};
use sluice_proxy::{Runtime, Snapshot};
use sluice_store::{Store, WriterHandle};
use sluice_tls::fixed::FixedCert;
use sluice_tls::mint::{LeafName, Minter};
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
    let data_dir = load::data_dir(args)?;
    let config = load::with_policies(
        load::config(args)?,
        Some(&data_dir),
        load::PolicySource::DataDir,
    )?;
    for w in &config.warnings {
        tracing::warn!(warning = %w, "configuration");
    }
    if let Some(p) = &config.policy_override {
        tracing::warn!(file = %p.display(), "policies from the admin API replace the config file's [[policy]]");
    }
    private_data_dir(&data_dir)?;
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
    // Catch SIGXFSZ before the log writer can exceed RLIMIT_FSIZE: its default action kills
    // the process, a caught signal makes the write fail with EFBIG instead, which the writer
    // handles like a full disk (security matrix DL-03).
    let xfsz = signal(SignalKind::from_raw(libc::SIGXFSZ))
        .map_err(|e| Failure::runtime(format!("SIGXFSZ handler: {e}")))?;
    let log_path = match &config.access_log {
        LogTarget::Stdout => None,
        LogTarget::File(p) => Some(p.clone()),
    };
    let log = AccessLog::start_with_mode(log_path.as_deref(), config.log_mode)
        .map_err(|e| Failure::runtime(format!("log.access: {e}")))?;
    let snapshot = build_snapshot(config, &own)?;
    let minter = Arc::new(Minter::new(ca.clone(), snapshot.config.ca.leaf_cache));
    let (pinning, writer) = open_store(data_dir, &snapshot.config.pinning)?;
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
    let reloader = Arc::new(Reloader {
        config: args.config.clone(),
        data_dir: data_dir.to_path_buf(),
        own: own.clone(),
        lock: Arc::new(Mutex::new(())),
    });
    let router = admin_router(&rt, &reloader, &proxy_addrs, admin_addr)?;
    let mut admin_stop = stop_rx.clone();
    if !admin_addr.ip().is_loopback() {
        let cert = admin_cert(&rt, admin_addr)?;
        tokio::spawn(crate::admin_tls::serve(
            admin,
            router,
            cert,
            stop_rx.clone(),
        ));
    } else {
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
    }
    let ca_path = ca.cert_path().display().to_string();
    eprintln!(
        "sluice ready proxy={} admin={admin_addr} ca={ca_path}",
        proxy_addrs.join(",")
    );
    eprintln!(
        "try: curl --proxy http://{} --cacert {ca_path} https://example.com/",
        proxy_addrs.first().map_or("127.0.0.1:3128", String::as_str)
    );
    wait_for_signals(args, &rt, &reloader, xfsz).await;
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

/// The admin listener's certificate, minted now for `admin.tls_names` (or their defaults).
fn admin_cert(rt: &Arc<Runtime>, admin_addr: SocketAddr) -> Result<Arc<FixedCert>, Failure> {
    let config = rt.snapshot.load().config.clone();
    let names = crate::admin_tls::names(&config.admin, admin_addr.ip());
    let cert = FixedCert::new(rt.minter.clone(), names)
        .map_err(|e| Failure::runtime(format!("admin certificate: {e}")))?;
    let shown: Vec<String> = cert.names().iter().map(leaf_name_text).collect();
    tracing::warn!(%admin_addr, names = %shown.join(","), "admin listener is not on loopback: API and UI over HTTPS only (certificate from the sluice CA for these names; admin.tls_names)");
    Ok(Arc::new(cert))
}

/// The DNS names of the admin certificate, accepted as `Host` over HTTPS (none on loopback).
fn tls_hosts(config: &sluice_policy::config::AdminConfig, admin_addr: SocketAddr) -> Vec<String> {
    if admin_addr.ip().is_loopback() {
        return Vec::new();
    }
    crate::admin_tls::names(config, admin_addr.ip())
        .into_iter()
        .filter_map(|n| match n {
            LeafName::Dns(d) => Some(d),
            LeafName::Ip(_) => None,
        })
        .collect()
}

fn leaf_name_text(name: &LeafName) -> String {
    match name {
        LeafName::Dns(d) => d.clone(),
        LeafName::Ip(ip) => ip.to_string(),
    }
}

/// Creates the data dir 0700, or makes an existing one 0700 (security matrix HC-09): it holds
/// the event store, the audit trail, the admin token and the CA key. Set explicitly, so the
/// umask does not matter; tightening an existing directory is logged.
fn private_data_dir(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let failed = |e: std::io::Error| Failure::runtime(format!("data dir {}: {e}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    let mode = std::fs::metadata(dir).map_err(failed)?.permissions().mode() & 0o7777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %dir.display(), was = format!("{mode:04o}"), "data dir was open to other users; permissions tightened to 0700");
        }
    }
    Ok(())
}

/// The admin router with its token, catalog and audit trail. A listener on a non-loopback
/// address needs a token file chosen by the administrator (security matrix AD-01): a token
/// generated into the data dir is fine for a laptop, not for an exposed port.
fn admin_router(
    rt: &Arc<Runtime>,
    reloader: &Arc<Reloader>,
    proxy_addrs: &[String],
    admin_addr: SocketAddr,
) -> Result<axum::Router, Failure> {
    let data_dir = reloader.data_dir.as_path();
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
        data_dir: Some(data_dir.to_path_buf()),
        tls_hosts: tls_hosts(&config.admin, admin_addr),
        audit_mode: config.log_mode,
        policy: Some(sluice_admin::policy::PolicyUpdates {
            file: data_dir.join(sluice_policy::config::POLICY_FILE),
            backend: reloader.clone(),
            lock: reloader.lock.clone(),
        }),
    };
    let state = sluice_admin::AdminState::new(rt.clone(), catalog, settings);
    Ok(sluice_admin::router(state))
}

/// The event store in the data dir and its observation writer.
fn open_store(
    data_dir: &Path,
    pinning: &sluice_policy::config::PinningConfig,
) -> Result<(Pinning, WriterHandle), Failure> {
    let path = data_dir.join(STORE_FILE);
    let store = Store::open(&path).map_err(|e| Failure::runtime(format!("event store: {e}")))?;
    let retention = Arc::new(sluice_store::Retention::new(
        pinning.retention,
        pinning.max_observations,
    ));
    let (sink, writer) = store
        .writer_with(4096, retention.clone())
        .map_err(|e| Failure::runtime(format!("event store: {e}")))?;
    Ok((
        Pinning {
            store: Arc::new(store),
            sink,
            retention,
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
    let upstream = UpstreamTls::new(&config.upstream.extra_roots, &config.upstream.crls)
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

/// Builds snapshots from the configuration file and the policy override: for reloads and for
/// the admin API's policy updates, which both hold `lock` while they build and swap.
struct Reloader {
    config: Option<PathBuf>,
    data_dir: PathBuf,
    own: Vec<SocketAddr>,
    lock: Arc<Mutex<()>>,
}

impl Reloader {
    /// Rebuilds from the files and swaps; a failure keeps the running snapshot.
    fn reload(&self, rt: &Runtime) {
        let result_label = |ok| sluice_proxy::metrics::ResultLabels {
            result: if ok { "ok" } else { "failed" },
        };
        let _serial = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let result = load::config_file(self.config.as_deref())
            .and_then(|c| load::with_policies(c, Some(&self.data_dir), load::PolicySource::DataDir))
            .and_then(|c| build_snapshot(c, &self.own));
        match result {
            Ok(snapshot) => {
                if let Some(p) = &rt.pinning {
                    let c = &snapshot.config.pinning;
                    p.retention.set(c.retention, c.max_observations);
                }
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
        reload_ca(&self.data_dir, rt);
    }
}

impl sluice_admin::policy::PolicyBackend for Reloader {
    fn build(&self, document: Option<&str>) -> Result<Snapshot, sluice_admin::policy::BuildError> {
        use sluice_admin::policy::BuildError;
        let config = load::config_file(self.config.as_deref())
            .map_err(|f| BuildError::Unavailable(f.message))?;
        let source = document.map_or(load::PolicySource::ConfigFile, load::PolicySource::Document);
        let config = load::with_policies(config, Some(&self.data_dir), source)
            .map_err(|f| BuildError::Invalid(f.message))?;
        build_snapshot(config, &self.own).map_err(|f| BuildError::Invalid(f.message))
    }
}

async fn wait_for_signals(
    args: &Args,
    rt: &Arc<Runtime>,
    reloader: &Reloader,
    mut xfsz: tokio::signal::unix::Signal,
) {
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
            _ = hup.recv() => reloader.reload(rt),
            // logrotate: the log file was moved; write to a fresh one from the next record.
            _ = usr1.recv() => rt.log.reopen(),
            // The failed write itself is reported by the log writer.
            _ = xfsz.recv() => tracing::debug!("SIGXFSZ: file size limit reached"),
            _ = watch.tick() => {
                let now = config_stamp(args);
                if now != stamp {
                    stamp = now;
                    reloader.reload(rt);
                }
            }
        }
    }
}

fn config_stamp(args: &Args) -> Option<std::time::SystemTime> {
    let path = args.config.as_ref()?;
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Re-reads the CA on every reload: a replaced CA is used from now on (its leaves only), and
/// one that no longer loads (key removed, unreadable, corrupt, not matching) stops minting, so
/// decryption fails closed while bypass and blocks keep working (security matrix FT-05).
fn reload_ca(data_dir: &Path, rt: &Runtime) {
    let config = rt.snapshot.load().config.clone();
    match load::existing_ca(&config, data_dir).map_err(|e| e.to_string()) {
        Ok(ca) => {
            let current = rt.minter.ca();
            if ca.fingerprint() != current.fingerprint() || rt.minter.unavailable().is_some() {
                let fingerprint = ca.fingerprint().to_string();
                rt.minter.replace(Arc::new(ca));
                tracing::warn!(%fingerprint, "CA loaded; new leaves are signed by it");
                eprintln!("sluice CA loaded: sha256 {fingerprint}");
            }
        }
        Err(e) => {
            rt.minter.disable(e.clone());
            tracing::error!(error = %e, "CA unavailable: decrypting connections fail closed until it is fixed and the gateway reloaded");
            eprintln!("sluice CA unavailable: {e}");
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
