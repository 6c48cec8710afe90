//! Approvals, rejections, the exceptions version across handles, and the TOML export.

use sluice_store::{Scope, Store, StoreError, SuspectRule, SuspectStatus};

use crate::support::{learning, obs, temp_store, HOST, JA4, OTHER_JA4};

fn three(store: &Store, host: &str, ja4: &str) {
    let mut batch = vec![
        obs(1000, host, ja4),
        obs(1100, host, ja4),
        obs(1200, host, ja4),
    ];
    batch[1].signal = "alert:unknown_ca".into();
    batch[2].client = "10.0.0.8".into();
    store.record(&batch).unwrap();
}

#[test]
fn approve_attaches_the_evidence() {
    let (_dir, store) = temp_store();
    three(&store, HOST, JA4);
    let approval = store
        .approve(HOST, Scope::Fingerprint, None, "vendor pins", "alice", 5000)
        .unwrap();
    assert_eq!(approval.ja4.as_deref(), Some(JA4));
    let e = &approval.evidence;
    assert_eq!(e.observations, 3);
    assert_eq!((e.first_seen, e.last_seen), (Some(1000), Some(1200)));
    assert_eq!(e.clients, vec!["10.0.0.7", "10.0.0.8"]);
    assert_eq!(e.ja4s, vec![JA4]);
    assert_eq!(e.signals.len(), 2);
    assert_eq!(
        (e.signals[0].signal.as_str(), e.signals[0].count),
        ("closed-after-handshake", 2)
    );

    // What is listed later is what was returned, evidence included.
    assert_eq!(store.approvals().unwrap(), vec![approval.clone()]);
    let rule = SuspectRule::default();
    assert_eq!(
        store.suspects(rule, 5000).unwrap()[0].status,
        SuspectStatus::Approved
    );
    let snapshot = store.exceptions_snapshot(5000).unwrap();
    assert_eq!(snapshot.approved.len(), 1);
    assert_eq!(snapshot.approved[0].ja4.as_deref(), Some(JA4));

    // Approving again replaces rather than duplicates.
    let again = store
        .approve(
            HOST,
            Scope::Fingerprint,
            Some(JA4),
            "still pins",
            "bob",
            6000,
        )
        .unwrap();
    assert_eq!(again.id, approval.id);
    let listed = store.approvals().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].note.as_str(), listed[0].actor.as_str()),
        ("still pins", "bob")
    );

    assert_eq!(store.revoke_approval(HOST).unwrap(), 1);
    assert!(store.approvals().unwrap().is_empty());
}

#[test]
fn approve_host_scope_needs_no_observations() {
    let (_dir, store) = temp_store();
    let approval = store
        .approve("Vendor.Example.", Scope::Host, Some(JA4), "", "alice", 1)
        .unwrap();
    assert_eq!(approval.host, "vendor.example");
    assert_eq!(approval.ja4, None);
    assert_eq!(approval.evidence.observations, 0);
    assert!(matches!(
        store.approve(" ", Scope::Host, None, "", "alice", 1),
        Err(StoreError::EmptyHost)
    ));
}

#[test]
fn approve_fingerprint_scope_must_know_which_fingerprint() {
    let (_dir, store) = temp_store();
    let err = store
        .approve(HOST, Scope::Fingerprint, None, "", "alice", 1)
        .unwrap_err();
    assert!(matches!(err, StoreError::NoFingerprint { .. }), "{err}");
    store
        .record(&[obs(1, HOST, JA4), obs(2, HOST, OTHER_JA4)])
        .unwrap();
    let err = store
        .approve(HOST, Scope::Fingerprint, None, "", "alice", 1)
        .unwrap_err();
    match err {
        StoreError::AmbiguousFingerprint { candidates, .. } => {
            assert_eq!(candidates, vec![JA4, OTHER_JA4]);
        }
        other => panic!("unexpected {other}"),
    }
    // Nothing was written by the failed attempts.
    assert!(store.approvals().unwrap().is_empty());
    assert_eq!(store.exceptions_version().unwrap(), 0);
}

#[test]
fn reject_removes_learned_and_approved_state_and_approve_lifts_it() {
    let (_dir, store) = temp_store();
    let batch: Vec<_> = (0..3)
        .map(|i| learning(obs(1000 + i, HOST, JA4), Scope::Fingerprint))
        .collect();
    store.record(&batch).unwrap();
    store
        .approve(HOST, Scope::Host, None, "", "alice", 1100)
        .unwrap();
    assert_eq!(store.learned(1100).unwrap().len(), 1);

    let rejection = store.reject(HOST, "must inspect", "bob", 1200).unwrap();
    assert_eq!(store.rejections().unwrap(), vec![rejection]);
    assert!(store.learned(1200).unwrap().is_empty());
    assert!(store.approvals().unwrap().is_empty());
    let snapshot = store.exceptions_snapshot(1200).unwrap();
    assert_eq!(snapshot.rejected, vec![HOST]);
    assert!(snapshot.approved.is_empty() && snapshot.learned.is_empty());

    store
        .approve(HOST, Scope::Host, None, "", "carol", 1300)
        .unwrap();
    assert!(store.rejections().unwrap().is_empty());
}

#[test]
fn exceptions_version_sees_changes_from_another_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let gateway = Store::open(&path).unwrap();
    let cli = Store::open(&path).unwrap();
    three(&gateway, HOST, JA4);

    let before = gateway.exceptions_version().unwrap();
    cli.approve(HOST, Scope::Host, None, "", "alice", 2000)
        .unwrap();
    let after_approve = gateway.exceptions_version().unwrap();
    assert_ne!(after_approve, before);
    assert_eq!(gateway.exceptions_snapshot(2000).unwrap().approved.len(), 1);

    cli.reject("other.example", "", "alice", 2001).unwrap();
    let after_reject = gateway.exceptions_version().unwrap();
    assert_ne!(after_reject, after_approve);

    // Observations in report mode are not exception changes.
    cli.record(&[obs(3000, HOST, JA4)]).unwrap();
    assert_eq!(gateway.exceptions_version().unwrap(), after_reject);
    // Removing nothing is not a change either.
    assert_eq!(cli.revoke_approval("nothing.example").unwrap(), 0);
    assert_eq!(gateway.exceptions_version().unwrap(), after_reject);
}

#[test]
fn export_writes_catalog_tables_for_review() {
    let (_dir, store) = temp_store();
    three(&store, HOST, JA4);
    three(&store, HOST, OTHER_JA4);
    three(&store, "rejected.example", JA4);
    store.reject("rejected.example", "", "alice", 1).unwrap();
    let text = store
        .export_suspects_toml(SuspectRule::default(), 1_767_225_600)
        .unwrap();
    assert!(
        text.starts_with("# sluice pinning export, 2026-01-01T00:00:00Z"),
        "{text}"
    );
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let apps = doc["app"].as_array().unwrap();
    assert_eq!(apps.len(), 1, "{text}");
    let app = apps[0].as_table().unwrap();
    assert_eq!(app["id"].as_str(), Some("pinned-example-com"));
    assert_eq!(app["name"].as_str(), Some(HOST));
    assert_eq!(app["vendor"].as_str(), Some("unknown"));
    assert_eq!(app["category"].as_str(), Some("Unreviewed"));
    assert_eq!(app["global_bypass"].as_bool(), Some(false));
    assert_eq!(app["domains"].as_array().unwrap()[0].as_str(), Some(HOST));
    let source = app["sources"].as_array().unwrap()[0].as_str().unwrap();
    assert!(
        source.starts_with("sluice pinning observations: 6 observations, signals closed-after-handshake x4, alert:unknown_ca x2"),
        "{source}"
    );
    assert!(
        source.contains("first seen 1970-01-01T00:16:40Z"),
        "{source}"
    );
    assert!(
        source.contains(JA4) && source.contains(OTHER_JA4),
        "{source}"
    );
}
