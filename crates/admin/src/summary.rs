//! `GET /api/config`: what the running gateway is configured with, in a shape for people and
//! dashboards. Never secrets: the admin token, the CA key and the htpasswd contents are not
//! here, only whether they are configured.

use serde_json::{json, Value};
use sluice_policy::config::{
    AllowPrivate, Config, LearnScope, NonTls, PinningMode, PolicyConfig, RuleLists,
};
use sluice_policy::engine::Engine;

use crate::{AdminState, TokenSource};

/// The summary of the current snapshot.
pub(crate) fn config_summary(s: &AdminState) -> Value {
    let snap = s.rt.snapshot.load();
    let c = &snap.config;
    let settings = s.settings();
    json!({
        "source": c.source.as_ref().map_or_else(
            || sluice_policy::config::EMBEDDED.to_string(),
            |p| p.display().to_string(),
        ),
        "proxy": {
            "listen": c.proxy.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "bound": settings.proxy_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "connect_ports": c.proxy.connect_ports,
            "non_tls": match c.proxy.non_tls { NonTls::Block => "block", NonTls::Tunnel => "tunnel" },
            "max_connections": c.proxy.max_connections,
        },
        "admin": {
            "listen": c.admin.listen.to_string(),
            "bound": settings.admin_addr.map(|a| a.to_string()),
            "token": match settings.token_source {
                TokenSource::Configured => "admin.token_file",
                TokenSource::Generated => "generated in the data dir",
            },
            "pac_direct": c.admin.pac_direct,
        },
        "upstream": {
            "extra_roots": c.upstream.extra_roots.len(),
            "trusted_roots": snap.upstream.root_count(),
            "hosts_file": c.upstream.hosts_file.as_ref().map(|p| p.display().to_string()),
            "allow_private": allow_private(&c.upstream.allow_private),
        },
        "auth": { "htpasswd": c.htpasswd.is_some(), "realm": c.auth_realm },
        "catalog": {
            "apps": s.catalog.apps().len(),
            "global_bypass": s.catalog.apps().iter().filter(|a| a.global_bypass).count(),
            "extra_files": c.catalog_extra.len(),
            "category_lists": c.category_lists.len(),
        },
        "pinning": pinning(c),
        "policies": c.policies.iter().map(|p| policy(c, p)).collect::<Vec<_>>(),
        "rules": rules(&snap.engine),
        "warnings": c.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn pinning(c: &Config) -> Value {
    let p = &c.pinning;
    json!({
        "mode": mode(p.mode),
        "quiet_window_secs": p.quiet_window.as_secs_f64(),
        "threshold": p.threshold,
        "window_secs": p.window.as_secs(),
        "learned_ttl_secs": p.learned_ttl.as_secs(),
        "scope": match p.scope { LearnScope::Fingerprint => "fingerprint", LearnScope::Host => "host" },
    })
}

fn policy(c: &Config, p: &PolicyConfig) -> Value {
    json!({
        "name": p.name,
        "origin": p.origin.to_string(),
        "networks": p.networks.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "users": p.users.len(),
        "decrypt": p.decrypt,
        "global_bypass": p.global_bypass,
        "pinning": mode(p.pinning.unwrap_or(c.pinning.mode)),
        "bypass": list_sizes(&p.bypass),
        "block": list_sizes(&p.block),
    })
}

fn list_sizes(l: &RuleLists) -> Value {
    json!({
        "domains": l.domains.len(),
        "apps": l.apps.len(),
        "categories": l.categories.len(),
        "urls": l.urls.len(),
        "file_types": l.file_types.len(),
        "hashes": l.hashes.len(),
    })
}

/// Policy rules (every one) and catalog rules that were hit, with their hit counts.
fn rules(engine: &Engine) -> Vec<Value> {
    let hits = engine.hits();
    engine
        .rules()
        .iter()
        .enumerate()
        .filter(|(i, r)| r.policy.is_some() || hits.get(*i).is_some_and(|h| *h > 0))
        .map(|(i, r)| {
            json!({
                "index": i,
                "policy": r.policy,
                "list": r.list,
                "value": r.value,
                "origin": r.origin,
                "owner": r.owner,
                "note": r.note,
                "expires": r.expires,
                "hits": hits.get(i).copied().unwrap_or(0),
            })
        })
        .collect()
}

fn mode(m: PinningMode) -> &'static str {
    match m {
        PinningMode::Report => "report",
        PinningMode::Learn => "learn",
        PinningMode::Off => "off",
    }
}

fn allow_private(a: &AllowPrivate) -> Value {
    match a {
        AllowPrivate::None => json!(false),
        AllowPrivate::All => json!(true),
        AllowPrivate::Nets(n) => json!(n.iter().map(ToString::to_string).collect::<Vec<_>>()),
    }
}
