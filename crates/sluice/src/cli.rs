//! The administrator's verbs other than `run`.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use serde_json::json;
use sluice_policy::config::Config;
use sluice_policy::engine::Query;
use sluice_policy::exceptions::Exceptions;
use sluice_policy::name::{DomainName, Host};

use crate::{load, Args, Failure};

/// `sluice check HOST`: the decision and its full trace.
pub(crate) fn check(
    args: &Args,
    host: &str,
    client: IpAddr,
    user: Option<&str>,
    sni: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let config = load::effective(args)?;
    let catalog = load::catalog(&config)?;
    let engine = load::engine(&config, &catalog)?;
    let host = Host::parse(host)
        .map_err(|e| Failure::usage(format!("`{host}` is not a valid host: {e}")))?;
    let sni = sni
        .map(DomainName::parse)
        .transpose()
        .map_err(|e| Failure::usage(format!("--sni is not a valid name: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let q = Query {
        client,
        user,
        host: Some(&host),
        sni: sni.as_ref(),
        ja4: None,
        now,
        explain: true,
    };
    let d = engine.decide(&q, &Exceptions::empty());
    let rule = d.rule.map(|r| engine.describe(r));
    if json {
        let out = json!({
            "decision": d.action,
            "reason": d.reason,
            "policy": d.policy,
            "app": d.app,
            "category": d.category,
            "rule": rule,
            "sni_mismatch": d.sni_mismatch,
            "trace": d.trace,
        });
        println!("{out}");
        return Ok(());
    }
    println!("{host}: {} ({})", d.action.as_str(), d.reason);
    println!("  policy:   {}", d.policy);
    println!("  app:      {}", d.app.as_deref().unwrap_or("-"));
    println!("  category: {}", d.category.as_deref().unwrap_or("-"));
    println!("  rule:     {}", rule.as_deref().unwrap_or("-"));
    println!("trace:");
    for step in &d.trace {
        println!(
            "  [{}] {:<24} {}",
            if step.matched { "x" } else { " " },
            step.step,
            step.detail
        );
    }
    Ok(())
}

/// `sluice ca export [--der]`.
pub(crate) fn ca_export(args: &Args, der: bool) -> Result<(), Failure> {
    let config = load::config(args)?;
    let dir = load::data_dir(args)?;
    let ca = load::ca(&config, &dir)?;
    // What devices must trust: the root at the end of a `[ca] cert` chain file, not the
    // intermediate that signs (security matrix HC-10). Said on stderr, so stdout stays the
    // certificate alone.
    if ca.is_chain() {
        let what = if ca.trust_is_root() {
            "the root certificate at the end of the chain"
        } else {
            "the last certificate of the chain (no self-signed root in the file: devices must trust the enterprise root that issued it)"
        };
        eprintln!(
            "sluice: {what} in {} (leaves are signed by its first certificate and sent with the chain)",
            ca.cert_path().display()
        );
    }
    let mut out = std::io::stdout().lock();
    let written = if der {
        out.write_all(ca.trust_der().as_ref())
    } else {
        out.write_all(ca.trust_pem().as_bytes())
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| Failure::runtime(format!("writing the certificate: {e}")))
}

/// `sluice apps list [--json]`.
pub(crate) fn apps_list(args: &Args, json: bool) -> Result<(), Failure> {
    let config = load::config(args)?;
    let catalog = load::catalog(&config)?;
    if json {
        let apps: Vec<_> = catalog.apps().iter().map(app_json).collect();
        println!("{}", serde_json::Value::Array(apps));
        return Ok(());
    }
    println!(
        "{:<34} {:<26} {:<36} {:>7}",
        "APPLICATION", "CATEGORY", "COVERAGE", "DOMAINS"
    );
    for app in catalog.apps() {
        let coverage = if app.global_bypass {
            "global bypass"
        } else {
            "available for policy exceptions"
        };
        println!(
            "{:<34} {:<26} {:<36} {:>7}",
            app.name,
            app.category,
            coverage,
            app.all_domains().count()
        );
    }
    Ok(())
}

/// `sluice apps show ID [--json]`.
pub(crate) fn apps_show(args: &Args, id: &str, json: bool) -> Result<(), Failure> {
    let config = load::config(args)?;
    let catalog = load::catalog(&config)?;
    let app = catalog.get(id).ok_or_else(|| {
        Failure::runtime(format!(
            "no application `{id}` in the catalog (see `sluice apps list`)"
        ))
    })?;
    if json {
        println!("{}", app_json(app));
        return Ok(());
    }
    println!("{} ({})", app.name, app.id);
    println!("  vendor:   {}", app.vendor);
    println!("  category: {}", app.category);
    println!(
        "  coverage: {}",
        if app.global_bypass {
            "global bypass"
        } else {
            "available for policy exceptions"
        }
    );
    println!("  origin:   {}:{}", app.origin.file, app.origin.line);
    if app.services.is_empty() {
        println!("domains:");
        for d in &app.domains {
            println!("  {}", d.pattern);
        }
    }
    for s in &app.services {
        println!("service {}:", s.name);
        for d in &s.domains {
            println!("  {}", d.pattern);
        }
    }
    println!("sources:");
    for s in &app.sources {
        println!("  {s}");
    }
    Ok(())
}

fn app_json(app: &sluice_policy::catalog::App) -> serde_json::Value {
    let domains: Vec<&str> = app.all_domains().map(|d| d.pattern.as_str()).collect();
    json!({
        "id": app.id,
        "name": app.name,
        "vendor": app.vendor,
        "category": app.category,
        "global_bypass": app.global_bypass,
        "pinning": app.pinning,
        "domains": domains,
        "services": app.services.iter().map(|s| json!({"name": s.name, "domains": s.domains.iter().map(|d| &d.pattern).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "sources": app.sources,
        "verified": app.verified,
    })
}

/// `sluice config check FILE`; with `--data-dir`, also the policy override stored there
/// (`policy.json`, which replaces the file's `[[policy]]` tables in the running gateway).
pub(crate) fn config_check(args: &Args, file: &Path) -> Result<(), Failure> {
    match Config::load(file) {
        Ok(config) => {
            let data_dir = args.data_dir.as_deref();
            let config = load::with_policies(config, data_dir, load::PolicySource::DataDir)?;
            if let Some(p) = &config.policy_override {
                eprintln!(
                    "note: the [[policy]] tables of {} are replaced by {} (admin API)",
                    file.display(),
                    p.display()
                );
            }
            for w in &config.warnings {
                eprintln!("{}: warning: {w}", file.display());
            }
            let catalog = load::catalog(&config)?;
            let engine = load::engine(&config, &catalog)?;
            sluice_proxy::inspect::Inspector::build(&config).map_err(Failure::usage)?;
            for w in load::references(&config, &catalog, &engine)? {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", file.display());
            Ok(())
        }
        Err(issues) => {
            for i in &issues {
                eprintln!("{}: {i}", file.display());
            }
            Err(Failure::runtime(format!(
                "{}: {} error(s)",
                file.display(),
                issues.len()
            )))
        }
    }
}
