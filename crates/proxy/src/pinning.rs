//! Certificate-pinning detection on decrypted connections, and the exceptions it feeds.
//!
//! After sluice presented a minted leaf, a client that rejects it shows one of two signals
//! (DESIGN.md "Pinning detection"): a fatal certificate alert during the handshake
//! (`alert:unknown_ca`, ...), or a completed handshake followed by a close (FIN, RST or
//! close_notify) before one byte of application data within `pinning.quiet_window`
//! (`closed-after-handshake`). Each becomes an observation for the store, written off the data
//! path; a client that idles longer, or sends a request, is never an observation.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_policy::config::{LearnScope, PinningMode};
use sluice_policy::exceptions::{Exceptions, Grant};
use sluice_policy::name::DomainName;
use sluice_store::{LearnParams, Observation, ObservationSink, Scope, Store, SuspectRule};

use crate::log::AccessRecord;
use crate::Runtime;

/// Fatal alerts that mean "I do not accept this certificate" (RFC 8446 §6.2).
const CERTIFICATE_ALERTS: &[&str] = &[
    "bad_certificate",
    "unsupported_certificate",
    "certificate_revoked",
    "certificate_expired",
    "certificate_unknown",
    "unknown_ca",
];

/// The signal name of a closed-without-data connection.
pub const CLOSED_AFTER_HANDSHAKE: &str = "closed-after-handshake";

/// The store connection of a running gateway.
pub struct Pinning {
    /// The store (CLI and admin share the file).
    pub store: Arc<Store>,
    /// Non-blocking observation writer.
    pub sink: ObservationSink,
    /// The writer's retention bounds (`pinning.retention`, `pinning.max_observations`),
    /// updated on reload.
    pub retention: Arc<sluice_store::Retention>,
}

/// Recent decrypted connections that carried application data, per (client, host,
/// fingerprint). Browsers open speculative extra connections and close the unused ones right
/// after the handshake; such a close is not a pinning signal when a sibling connection of the
/// same client and fingerprint to the same host carried data around the same time.
#[derive(Default)]
pub struct Activity {
    seen: Mutex<HashMap<(IpAddr, String, String), Instant>>,
}

/// Entries kept before old ones are pruned.
const ACTIVITY_CAP: usize = 65_536;

impl Activity {
    /// Notes that a connection carried data now.
    pub fn mark(&self, client: IpAddr, host: &str, ja4: &str) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.len() >= ACTIVITY_CAP {
            let horizon = Instant::now().checked_sub(Duration::from_secs(60));
            seen.retain(|_, t| horizon.is_none_or(|h| *t > h));
            if seen.len() >= ACTIVITY_CAP {
                seen.clear();
            }
        }
        seen.insert((client, host.to_string(), ja4.to_string()), Instant::now());
    }

    /// Whether a sibling connection carried data since `since`.
    pub fn active_since(&self, client: IpAddr, host: &str, ja4: &str, since: Instant) -> bool {
        let Ok(seen) = self.seen.lock() else {
            return false;
        };
        seen.get(&(client, host.to_string(), ja4.to_string()))
            .is_some_and(|t| *t >= since)
    }
}

/// Judges a connection that closed after the handshake without data: after `quiet_window`
/// (so siblings opened alongside it have had their chance to speak) it becomes an observation
/// unless a sibling connection of the same client and fingerprint carried data.
pub fn closed_after_handshake(rt: Arc<Runtime>, rec: &AccessRecord, client: IpAddr) {
    let rec = rec.clone();
    let quiet = rt.snapshot.load().config.pinning.quiet_window;
    let since = Instant::now()
        .checked_sub(quiet)
        .unwrap_or_else(Instant::now);
    tokio::spawn(async move {
        tokio::time::sleep(quiet).await;
        let host = rec
            .sni
            .clone()
            .or_else(|| rec.host.clone())
            .unwrap_or_default();
        let ja4 = rec.ja4.clone().unwrap_or_default();
        if rt.activity.active_since(client, &host, &ja4, since) {
            tracing::debug!(
                host,
                "quiet close beside an active sibling connection: not a pinning signal"
            );
            return;
        }
        observe(&rt, &rec, CLOSED_AFTER_HANDSHAKE);
    });
}

/// Whether a client handshake error (as `intercept` formats it) is a pinning signal.
pub fn alert_signal(error: &str) -> Option<&str> {
    let alert = error.strip_prefix("alert:")?;
    CERTIFICATE_ALERTS.contains(&alert).then_some(error)
}

/// Records an observation for a decrypted connection's client, if the policy's mode asks
/// for it. Never blocks: a full queue is counted and dropped.
pub fn observe(rt: &Runtime, rec: &AccessRecord, signal: &str) {
    let Some(pinning) = &rt.pinning else { return };
    let snap = rt.snapshot.load();
    let policy = rec.policy.as_deref().unwrap_or("default");
    let mode = snap.engine.pinning_mode(policy);
    if mode == PinningMode::Off {
        return;
    }
    let cfg = &snap.config.pinning;
    let host = rec
        .sni
        .clone()
        .or_else(|| rec.host.clone())
        .unwrap_or_default();
    let obs = Observation {
        ts: crate::front::unix_now(),
        host,
        app: rec.app.clone(),
        client: rec.client.clone(),
        user: rec.user.clone(),
        policy: policy.to_string(),
        signal: signal.to_string(),
        ja4: rec.ja4.clone().unwrap_or_default(),
        rule: SuspectRule {
            threshold: cfg.threshold,
            window_secs: secs(cfg.window),
        },
        learn: (mode == PinningMode::Learn).then(|| LearnParams {
            ttl_secs: secs(cfg.learned_ttl),
            scope: match cfg.scope {
                LearnScope::Fingerprint => Scope::Fingerprint,
                LearnScope::Host => Scope::Host,
            },
        }),
    };
    let label = crate::metrics::FailureLabels {
        side: "client".into(),
        signal: signal.to_string(),
    };
    rt.metrics.pinning_observations.get_or_create(&label).inc();
    if pinning.sink.try_record(obs).is_err() {
        rt.metrics.store_dropped.inc();
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Compiles the store's exceptions into the policy engine's lookup.
pub fn compile(ex: &sluice_store::Exceptions) -> Exceptions {
    let mut out = Exceptions::empty();
    for a in &ex.approved {
        if let Ok(host) = DomainName::parse(&a.host) {
            out.approve(
                host,
                Grant {
                    ja4: a.ja4.clone(),
                    expires: None,
                    evidence: 0,
                },
            );
        }
    }
    for l in &ex.learned {
        if let Ok(host) = DomainName::parse(&l.host) {
            let evidence = u32::try_from(l.evidence_count).unwrap_or(u32::MAX);
            out.learn(
                host,
                Grant {
                    ja4: l.ja4.clone(),
                    expires: Some(l.expires),
                    evidence,
                },
            );
        }
    }
    out
}

/// Keeps `rt.exceptions` in step with the store: polls its change counter every second (the
/// CLI and admin API write from other connections or processes) and recompiles on change, and
/// at least every minute so expiries take effect.
pub async fn follow(rt: Arc<Runtime>) {
    let Some(store) = rt.pinning.as_ref().map(|p| p.store.clone()) else {
        return;
    };
    let mut seen = None;
    let mut ticks = 0u32;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        ticks += 1;
        let s = store.clone();
        let version = tokio::task::spawn_blocking(move || s.exceptions_version()).await;
        let Ok(Ok(version)) = version else { continue };
        if seen == Some(version) && ticks % 60 != 0 {
            continue;
        }
        let s = store.clone();
        let now = crate::front::unix_now();
        match tokio::task::spawn_blocking(move || s.exceptions_snapshot(now)).await {
            Ok(Ok(snapshot)) => {
                rt.exceptions.store(Arc::new(compile(&snapshot)));
                seen = Some(snapshot.version);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "reading pinning exceptions failed"),
            Err(_) => {}
        }
    }
}
