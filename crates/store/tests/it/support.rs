//! Builders shared by the tests.

use sluice_store::{LearnParams, Observation, Scope, Store, SuspectRule};
use tempfile::TempDir;

pub(crate) const HOST: &str = "pinned.example.com";
pub(crate) const JA4: &str = "t13d1516h2_8daaf6152771_e5627efa2ab1";
pub(crate) const OTHER_JA4: &str = "t13d1715h2_5b57614c22b0_3d5424432f57";

/// A fresh store in its own temporary directory (kept alive by the returned guard).
pub(crate) fn temp_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("events.db")).unwrap();
    (dir, store)
}

/// A report-mode observation with the default rule (3 within 600 s).
pub(crate) fn obs(ts: i64, host: &str, ja4: &str) -> Observation {
    Observation {
        ts,
        host: host.to_string(),
        app: None,
        client: "10.0.0.7".to_string(),
        user: None,
        policy: "default".to_string(),
        signal: "closed-after-handshake".to_string(),
        ja4: ja4.to_string(),
        rule: SuspectRule::default(),
        learn: None,
    }
}

/// The same observation from a policy in learn mode.
pub(crate) fn learning(mut o: Observation, scope: Scope) -> Observation {
    o.learn = Some(LearnParams {
        ttl_secs: 3600,
        scope,
    });
    o
}
