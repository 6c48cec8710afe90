//! `GET /metrics`: the data path's registry (`sluice_*` counters kept as records are emitted)
//! plus values read at scrape time — leaf cache size, leaves minted, rule hits, pinning
//! exceptions in force, admin authentication failures — in the OpenMetrics text format.
//!
//! Rule hits are labelled by the rule's policy, list and index in the compiled engine, so the
//! label set is bounded by the configuration (never a host); only rules hit at least once are
//! listed, and the index resolves to the rule in `GET /api/config`. An engine is rebuilt on
//! reload, which Prometheus sees as a counter reset.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_store::SuspectStatus;

use crate::check::unix_now;
use crate::AdminState;

/// Content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A rule of the compiled policy.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// Policy name, or `catalog` for catalog rules.
    pub policy: String,
    /// The list: `bypass.domains`, `catalog.global_bypass`, ...
    pub list: String,
    /// Index of the rule in the compiled engine (see `GET /api/config`).
    pub rule: String,
}

/// Kind of pinning exception.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// learned, approved or rejected.
    pub kind: &'static str,
}

/// Pinning store counts read at scrape time.
struct StoreCounts {
    suspects: i64,
    learned: i64,
    approved: i64,
    rejected: i64,
}

/// `GET /metrics`.
pub async fn serve(State(s): State<AdminState>) -> Response {
    let counts = store_counts(&s).await;
    let extra = scrape_registry(&s, counts.as_ref());
    let mut out = String::with_capacity(16 * 1024);
    let encoded = encode_registry(&mut out, &s.rt.metrics.registry)
        .and_then(|()| encode_registry(&mut out, &extra))
        .and_then(|()| encode_eof(&mut out));
    if encoded.is_err() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], out).into_response()
}

fn scrape_registry(s: &AdminState, counts: Option<&StoreCounts>) -> Registry {
    let mut root = Registry::default();
    let r = root.sub_registry_with_prefix("sluice");
    let mint = s.rt.minter.stats();
    let cached: Gauge = Gauge::default();
    cached.set(i64::try_from(mint.cached).unwrap_or(i64::MAX));
    r.register(
        "leaf_cache_entries",
        "Minted leaf certificates in the cache",
        cached,
    );
    let minted: Counter = Counter::default();
    minted.inc_by(mint.minted);
    r.register("leaves_minted", "Leaf certificates minted", minted);
    let accepted: Counter = Counter::default();
    accepted.inc_by(s.rt.stats.accepted.load(Ordering::Relaxed));
    r.register(
        "connections_accepted",
        "Client connections accepted",
        accepted,
    );
    r.register(
        "rule_hits",
        "Decisions made by each policy or catalog rule",
        rule_hits(s),
    );
    if let Some(c) = counts {
        let exceptions: Family<KindLabels, Gauge> = Family::default();
        for (kind, n) in [
            ("learned", c.learned),
            ("approved", c.approved),
            ("rejected", c.rejected),
        ] {
            exceptions.get_or_create(&KindLabels { kind }).set(n);
        }
        r.register(
            "pinning_exceptions",
            "Pinning exceptions in force by kind",
            exceptions,
        );
        let suspects: Gauge = Gauge::default();
        suspects.set(c.suspects);
        r.register(
            "pinning_suspects",
            "Pinning suspects waiting for review",
            suspects,
        );
    }
    r.register(
        "admin_auth_failures",
        "Failed admin token attempts",
        s.shared.auth_failures.clone(),
    );
    root
}

fn rule_hits(s: &AdminState) -> Family<RuleLabels, Counter> {
    let snap = s.rt.snapshot.load();
    let family: Family<RuleLabels, Counter> = Family::default();
    let hits = snap.engine.hits();
    for (i, rule) in snap.engine.rules().iter().enumerate() {
        let n = hits.get(i).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let labels = RuleLabels {
            policy: rule.policy.clone().unwrap_or_else(|| "catalog".into()),
            list: rule.list.to_string(),
            rule: i.to_string(),
        };
        family.get_or_create(&labels).inc_by(n);
    }
    family
}

async fn store_counts(s: &AdminState) -> Option<StoreCounts> {
    let rule = crate::api::suspect_rule(s);
    let result = crate::api::with_store(s, move |store| {
        let now = unix_now();
        let suspects = store.suspects(rule, now)?;
        let waiting = suspects
            .iter()
            .filter(|x| x.status == SuspectStatus::Suspect)
            .count();
        Ok(StoreCounts {
            suspects: len(waiting),
            learned: len(store.learned(now)?.len()),
            approved: len(store.approvals()?.len()),
            rejected: len(store.rejections()?.len()),
        })
    })
    .await;
    result.ok()
}

fn len(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
