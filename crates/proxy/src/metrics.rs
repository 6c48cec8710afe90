//! Prometheus metrics of the data path, every name prefixed `sluice_`. Labels come from
//! bounded sets only — decisions, reason codes, sides, signals — never hosts, URLs or users.
//!
//! Most counters are derived from access-log records as they are emitted ([`Metrics::record`]),
//! so what the log says and what the metrics count cannot disagree; latencies are observed
//! where they are measured.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::log::AccessRecord;

/// Decision and reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// decrypt, bypass, block, none.
    pub decision: String,
    /// Reason code.
    pub reason: String,
}

/// A handshake failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// client or upstream.
    pub side: String,
    /// The signal or reason code.
    pub signal: String,
}

/// Direction of relayed bytes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    /// up (client to origin) or down.
    pub direction: &'static str,
    /// decrypt, bypass or block.
    pub decision: String,
}

/// An inspection verdict class (`clean`, `blocked:malware`, `skipped:bypass`, `error:...`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// The verdict, without the rule or signature.
    pub verdict: String,
}

/// Outcome of a reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// ok or failed.
    pub result: &'static str,
}

/// All data-path metrics.
pub struct Metrics {
    /// Registry with everything registered.
    pub registry: Registry,
    /// Connections by decision and reason.
    pub connections: Family<DecisionLabels, Counter>,
    /// Requests by decision and reason.
    pub requests: Family<DecisionLabels, Counter>,
    /// Open client connections.
    pub active: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Handshake failures by side and signal.
    pub handshake_failures: Family<FailureLabels, Counter>,
    /// Pinning observations by signal.
    pub pinning_observations: Family<FailureLabels, Counter>,
    /// Bytes relayed.
    pub bytes: Family<BytesLabels, Counter>,
    /// Leaf certificate cache hits.
    pub leaf_cache_hits: Counter,
    /// Leaf certificate cache misses (mints).
    pub leaf_cache_misses: Counter,
    /// Time to mint a leaf.
    pub mint_seconds: Histogram,
    /// Time to connect to an origin.
    pub upstream_connect_seconds: Histogram,
    /// Time of the upstream TLS handshake.
    pub upstream_tls_seconds: Histogram,
    /// Config reloads.
    pub reloads: Family<ResultLabels, Counter>,
    /// Inspection verdicts.
    pub inspections: Family<VerdictLabels, Counter>,
    /// Access-log records dropped because the writer fell behind (queue full only).
    pub log_dropped: Counter<u64, AtomicU64>,
    /// Access-log records handed to the writer.
    pub log_emitted: Counter<u64, AtomicU64>,
    /// Access-log records written as complete lines.
    pub log_written: Counter<u64, AtomicU64>,
    /// Access-log records lost: queue full, or their batch failed to write.
    pub log_events_dropped: Counter<u64, AtomicU64>,
    /// Pinning observations dropped because the store writer fell behind.
    pub store_dropped: Counter<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `sluice` prefix.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("sluice");
        let m = Self::unregistered();
        r.register(
            "connections",
            "Client connections by decision and reason",
            m.connections.clone(),
        );
        r.register(
            "requests",
            "HTTP requests by decision and reason",
            m.requests.clone(),
        );
        r.register(
            "active_connections",
            "Open client connections",
            m.active.clone(),
        );
        r.register(
            "handshake_failures",
            "TLS handshake failures by side and signal",
            m.handshake_failures.clone(),
        );
        r.register(
            "pinning_observations",
            "Certificate pinning observations by signal",
            m.pinning_observations.clone(),
        );
        r.register(
            "bytes",
            "Bytes relayed by direction and decision",
            m.bytes.clone(),
        );
        r.register(
            "leaf_cache_hits",
            "Minted leaf served from the cache",
            m.leaf_cache_hits.clone(),
        );
        r.register(
            "leaf_cache_misses",
            "Leaf minted (cache miss)",
            m.leaf_cache_misses.clone(),
        );
        r.register(
            "mint_seconds",
            "Time to mint a leaf certificate",
            m.mint_seconds.clone(),
        );
        r.register(
            "upstream_connect_seconds",
            "Time to connect to an origin",
            m.upstream_connect_seconds.clone(),
        );
        r.register(
            "upstream_tls_seconds",
            "Upstream TLS handshake time",
            m.upstream_tls_seconds.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        r.register(
            "inspections",
            "Content inspection verdicts",
            m.inspections.clone(),
        );
        r.register(
            "access_log_dropped",
            "Access-log records dropped",
            m.log_dropped.clone(),
        );
        r.register(
            "log_events_emitted",
            "Access-log records handed to the writer",
            m.log_emitted.clone(),
        );
        r.register(
            "log_events_written",
            "Access-log records written as complete lines",
            m.log_written.clone(),
        );
        r.register(
            "log_events_dropped",
            "Access-log records lost: queue full or a failed write",
            m.log_events_dropped.clone(),
        );
        r.register(
            "store_dropped",
            "Pinning observations dropped before the store",
            m.store_dropped.clone(),
        );
        Self {
            registry: root,
            ..m
        }
    }

    fn unregistered() -> Self {
        let latency = || Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        Self {
            registry: Registry::default(),
            connections: Family::default(),
            requests: Family::default(),
            active: Gauge::default(),
            handshake_failures: Family::default(),
            pinning_observations: Family::default(),
            bytes: Family::default(),
            leaf_cache_hits: Counter::default(),
            leaf_cache_misses: Counter::default(),
            mint_seconds: latency(),
            upstream_connect_seconds: latency(),
            upstream_tls_seconds: latency(),
            reloads: Family::default(),
            inspections: Family::default(),
            log_dropped: Counter::default(),
            log_emitted: Counter::default(),
            log_written: Counter::default(),
            log_events_dropped: Counter::default(),
            store_dropped: Counter::default(),
        }
    }

    /// Counts what an access-log record says.
    pub fn record(&self, rec: &AccessRecord) {
        if let Some(inspection) = &rec.inspection {
            // The rule or signature after the space is unbounded; the class before it is not.
            let verdict = inspection.split(' ').next().unwrap_or_default().to_string();
            self.inspections
                .get_or_create(&VerdictLabels { verdict })
                .inc();
        }
        let decision = rec.decision.unwrap_or("none").to_string();
        let reason = rec.reason.clone().unwrap_or_default();
        let labels = DecisionLabels {
            decision: decision.clone(),
            reason: reason.clone(),
        };
        if rec.kind == "connect" {
            self.connections.get_or_create(&labels).inc();
            self.bytes
                .get_or_create(&BytesLabels {
                    direction: "up",
                    decision: decision.clone(),
                })
                .inc_by(rec.bytes_up);
            self.bytes
                .get_or_create(&BytesLabels {
                    direction: "down",
                    decision,
                })
                .inc_by(rec.bytes_down);
            if reason.starts_with("upstream_cert_") || reason.starts_with("upstream_tls_") {
                let labels = FailureLabels {
                    side: "upstream".into(),
                    signal: reason,
                };
                self.handshake_failures.get_or_create(&labels).inc();
            } else if let Some(signal) = rec.error.as_deref().and_then(client_signal) {
                let labels = FailureLabels {
                    side: "client".into(),
                    signal,
                };
                self.handshake_failures.get_or_create(&labels).inc();
            }
        } else {
            self.requests.get_or_create(&labels).inc();
        }
    }
}

/// The bounded signal of a client-side handshake failure (`alert:unknown_ca`,
/// `client_tls_error`, `client_handshake_timeout`, ...), from the record's error text.
fn client_signal(error: &str) -> Option<String> {
    if let Some(alert) = error.strip_prefix("alert:") {
        return Some(format!(
            "alert:{}",
            alert.split_whitespace().next().unwrap_or("")
        ));
    }
    let code = error.split([':', ' ']).next().unwrap_or("");
    code.starts_with("client_").then(|| code.to_string())
}
