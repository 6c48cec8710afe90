//! `sluice what-if --config NEW.toml --log ACCESS.log`: replays the decisions recorded in an
//! access log against a (new) configuration and lists the flows it would decide differently —
//! so an administrator sees the effect of a policy change on real traffic before deploying it.
//! Only policy decisions are compared (not upstream failures or malformed requests); learned
//! and approved pinning exceptions are not replayed.

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use serde_json::{json, Value};
use sluice_policy::engine::{Engine, Query};
use sluice_policy::exceptions::Exceptions;
use sluice_policy::name::{DomainName, Host};

use crate::{load, Args, Failure};

/// Reasons that come from the policy (the rest are failures or protocol errors).
const POLICY_REASONS: &[&str] = &[
    "global",
    "policy",
    "policy-off",
    "default",
    "sni_mismatch",
    "blocked:domain",
    "blocked:app",
    "blocked:category",
];

pub(crate) fn run(args: &Args, log: &Path, json_out: bool) -> Result<(), Failure> {
    let config = load::effective(args)?;
    if let Some(p) = &config.policy_override {
        eprintln!(
            "note: the policies come from {} (admin API), which replaces the config file's \
             [[policy]] tables",
            p.display()
        );
    }
    let catalog = load::catalog(&config)?;
    let engine = load::engine(&config, &catalog)?;
    let file = std::fs::File::open(log)
        .map_err(|e| Failure::usage(format!("--log {}: {e}", log.display())))?;
    let (mut compared, mut changed) = (0usize, Vec::new());
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|e| Failure::runtime(format!("{}:{}: {e}", log.display(), n + 1)))?;
        let Ok(rec) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(diff) = replay(&engine, &rec) else {
            continue;
        };
        compared += 1;
        if let Some(d) = diff {
            changed.push(d);
        }
    }
    if json_out {
        println!("{}", json!({ "compared": compared, "changed": changed }));
    } else {
        for c in &changed {
            println!(
                "{} {}: {} ({}) -> {} ({}) [client {}]",
                c["kind"].as_str().unwrap_or(""),
                c["host"].as_str().unwrap_or(""),
                c["was"].as_str().unwrap_or(""),
                c["was_reason"].as_str().unwrap_or(""),
                c["now"].as_str().unwrap_or(""),
                c["now_reason"].as_str().unwrap_or(""),
                c["client"].as_str().unwrap_or(""),
            );
        }
        println!(
            "{} flows compared, {} decided differently",
            compared,
            changed.len()
        );
    }
    Ok(())
}

/// None: not a comparable record. Some(None): same decision. Some(Some(diff)): changed.
fn replay(engine: &Engine, rec: &Value) -> Option<Option<Value>> {
    let was = rec["decision"].as_str()?;
    let reason = rec["reason"].as_str()?;
    if !POLICY_REASONS.contains(&reason) {
        return None;
    }
    // A decrypted request belongs to its connection's decision; compare connections and
    // plain-HTTP requests (requests without SNI).
    if rec["kind"] == "request" && !rec["sni"].is_null() {
        return None;
    }
    let host = Host::parse(rec["host"].as_str()?).ok()?;
    let sni = rec["sni"].as_str().and_then(|s| DomainName::parse(s).ok());
    let client: IpAddr = rec["client"].as_str()?.parse().ok()?;
    let q = Query {
        client,
        user: rec["user"].as_str(),
        host: Some(&host),
        sni: sni.as_ref(),
        ja4: rec["ja4"].as_str(),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        explain: false,
    };
    let d = engine.decide(&q, &Exceptions::empty());
    if d.action.as_str() == was && d.reason == reason {
        return Some(None);
    }
    Some(Some(json!({
        "ts": rec["ts"], "kind": rec["kind"], "host": host.to_string(), "sni": rec["sni"], "client": client.to_string(),
        "user": rec["user"], "was": was, "was_reason": reason, "now": d.action.as_str(), "now_reason": d.reason,
        "policy": d.policy, "rule": d.rule.map(|r| engine.describe(r)),
    })))
}
