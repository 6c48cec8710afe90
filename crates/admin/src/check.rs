//! The policy tester behind `GET /api/check` and the UI's tester page: the running gateway's
//! engine and exceptions asked about one host, answered in the JSON of `sluice check --json`.

use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_policy::engine::Query;
use sluice_policy::name::{DomainName, Host};
use sluice_proxy::Runtime;

use crate::ApiError;

/// The tester's parameters (empty strings count as absent, as HTML forms send them).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckParams {
    /// CONNECT host or request host.
    #[serde(default)]
    pub host: String,
    /// Client address (default 127.0.0.1).
    #[serde(default)]
    pub client: Option<String>,
    /// Proxy user.
    #[serde(default)]
    pub user: Option<String>,
    /// SNI, when it differs from the host.
    #[serde(default)]
    pub sni: Option<String>,
    /// Client fingerprint (JA4), for fingerprint-scoped exceptions.
    #[serde(default)]
    pub ja4: Option<String>,
}

// === impl CheckParams ===

impl CheckParams {
    /// Whether the form was submitted at all.
    pub fn is_empty(&self) -> bool {
        self.host.trim().is_empty()
    }
}

/// Decides with the live engine and exceptions; the JSON of `sluice check --json`:
/// `{decision, reason, policy, app, category, rule, sni_mismatch, trace}`.
pub fn check(rt: &Runtime, p: &CheckParams) -> Result<Value, ApiError> {
    let host_text = p.host.trim();
    if host_text.is_empty() {
        return Err(ApiError::BadRequest("`host` is required".into()));
    }
    let host = Host::parse(host_text)
        .map_err(|e| ApiError::BadRequest(format!("`host` is not a valid host: {e}")))?;
    let client = match present(&p.client) {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::BadRequest("`client` is not an IP address".into()))?,
    };
    let sni = present(&p.sni)
        .map(DomainName::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("`sni` is not a valid name: {e}")))?;
    let snap = rt.snapshot.load();
    let exceptions = rt.exceptions.load();
    let q = Query {
        client,
        user: present(&p.user),
        host: Some(&host),
        sni: sni.as_ref(),
        ja4: present(&p.ja4),
        now: unix_now(),
        explain: true,
    };
    let d = snap.engine.decide(&q, &exceptions);
    let rule = d.rule.map(|r| snap.engine.describe(r));
    Ok(json!({
        "decision": d.action,
        "reason": d.reason,
        "policy": d.policy,
        "app": d.app,
        "category": d.category,
        "rule": rule,
        "sni_mismatch": d.sni_mismatch,
        "trace": d.trace,
    }))
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
