//! `sluice pinning list|approve|reject|export`: the review queue of certificate-pinning
//! suspects, against the same event store the running gateway writes (it picks changes up
//! within seconds).

use serde_json::json;
use sluice_store::{Scope, Store, SuspectRule};

use crate::run::STORE_FILE;
use crate::{load, Args, Failure};

fn open(args: &Args) -> Result<(Store, SuspectRule), Failure> {
    let config = load::config(args)?;
    let path = load::data_dir(args)?.join(STORE_FILE);
    let store = Store::open(&path).map_err(|e| Failure::runtime(format!("event store: {e}")))?;
    let window_secs = i64::try_from(config.pinning.window.as_secs()).unwrap_or(i64::MAX);
    Ok((
        store,
        SuspectRule {
            threshold: config.pinning.threshold,
            window_secs,
        },
    ))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn actor() -> String {
    std::env::var("USER").map_or_else(|_| "cli".into(), |u| format!("cli:{u}"))
}

fn store_err(e: sluice_store::StoreError) -> Failure {
    Failure::runtime(e.to_string())
}

/// `sluice pinning list [--json]`.
pub(crate) fn list(args: &Args, json: bool) -> Result<(), Failure> {
    let (store, rule) = open(args)?;
    let now = now();
    let suspects = store.suspects(rule, now).map_err(store_err)?;
    let learned = store.learned(now).map_err(store_err)?;
    let approvals = store.approvals().map_err(store_err)?;
    let rejections = store.rejections().map_err(store_err)?;
    if json {
        let out = json!({ "suspects": suspects, "learned": learned, "approved": approvals, "rejected": rejections });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{:<40} {:<10} {:>5}  {:<28} {:<22} FINGERPRINT",
        "HOST", "STATUS", "COUNT", "SIGNALS", "APP"
    );
    for s in &suspects {
        let signals: Vec<String> = s
            .signals
            .iter()
            .map(|c| format!("{}x{}", c.signal, c.count))
            .collect();
        let status = serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        println!(
            "{:<40} {:<10} {:>5}  {:<28} {:<22} {}",
            s.host,
            status,
            s.count,
            signals.join(","),
            s.app.as_deref().unwrap_or("-"),
            s.ja4
        );
    }
    if suspects.is_empty() {
        println!("(no suspects)");
    }
    for l in &learned {
        println!(
            "learned: {} ({}) expires {} evidence {}",
            l.host,
            l.ja4.as_deref().unwrap_or("all clients"),
            l.expires,
            l.evidence_count
        );
    }
    for a in &approvals {
        println!(
            "approved: {} ({}) by {}: {}",
            a.host,
            a.ja4.as_deref().unwrap_or("all clients"),
            a.actor,
            a.note
        );
    }
    for r in &rejections {
        println!("rejected: {} by {}: {}", r.host, r.actor, r.note);
    }
    Ok(())
}

/// `sluice pinning approve HOST [--scope host|fingerprint] [--ja4 FP] [--note TEXT]`.
pub(crate) fn approve(
    args: &Args,
    host: &str,
    scope: &str,
    ja4: Option<&str>,
    note: &str,
) -> Result<(), Failure> {
    let scope: Scope = scope
        .parse()
        .map_err(|_| Failure::usage("--scope must be `host` or `fingerprint`"))?;
    let host = normalise(host)?;
    let (store, _) = open(args)?;
    let a = store
        .approve(&host, scope, ja4, note, &actor(), now())
        .map_err(store_err)?;
    println!(
        "approved {} for {} ({} observations as evidence)",
        a.host,
        a.ja4
            .as_deref()
            .map_or_else(|| "all clients".to_string(), |j| format!("fingerprint {j}")),
        a.evidence.observations
    );
    Ok(())
}

/// `sluice pinning reject HOST [--note TEXT]`.
pub(crate) fn reject(args: &Args, host: &str, note: &str) -> Result<(), Failure> {
    let host = normalise(host)?;
    let (store, _) = open(args)?;
    store
        .reject(&host, note, &actor(), now())
        .map_err(store_err)?;
    println!("rejected {host}: it will not be learned again until cleared");
    Ok(())
}

/// `sluice pinning export`: suspects as catalog `[[app]]` TOML for review.
pub(crate) fn export(args: &Args) -> Result<(), Failure> {
    let (store, rule) = open(args)?;
    print!(
        "{}",
        store.export_suspects_toml(rule, now()).map_err(store_err)?
    );
    Ok(())
}

fn normalise(host: &str) -> Result<String, Failure> {
    sluice_policy::name::DomainName::parse(host)
        .map(|d| d.to_string())
        .map_err(|e| Failure::usage(format!("`{host}` is not a host name: {e}")))
}
