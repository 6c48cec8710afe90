//! Suspect threshold and window, learning, rejection and expiry.

use sluice_store::{Scope, SuspectRule, SuspectStatus};

use crate::support::{learning, obs, temp_store, HOST, JA4, OTHER_JA4};

const RULE: SuspectRule = SuspectRule {
    threshold: 3,
    window_secs: 600,
};

#[test]
fn two_observations_are_not_a_suspect() {
    let (_dir, store) = temp_store();
    store
        .record(&[obs(1000, HOST, JA4), obs(1010, HOST, JA4)])
        .unwrap();
    assert!(store.suspects(RULE, 2000).unwrap().is_empty());
}

#[test]
fn three_within_the_window_are_a_suspect() {
    let (_dir, store) = temp_store();
    let mut third = obs(1600, HOST, JA4);
    third.signal = "alert:unknown_ca".into();
    third.client = "10.0.0.9".into();
    third.app = Some("pinned-app".into());
    store
        .record(&[obs(1000, HOST, JA4), obs(1300, HOST, JA4), third])
        .unwrap();
    let suspects = store.suspects(RULE, 2000).unwrap();
    assert_eq!(suspects.len(), 1, "{suspects:?}");
    let s = &suspects[0];
    assert_eq!((s.host.as_str(), s.ja4.as_str()), (HOST, JA4));
    assert_eq!(s.count, 3);
    assert_eq!((s.first_seen, s.last_seen), (1000, 1600));
    assert_eq!(s.status, SuspectStatus::Suspect);
    assert_eq!(s.expires, None);
    assert_eq!(s.app.as_deref(), Some("pinned-app"));
    assert_eq!(s.clients, vec!["10.0.0.7", "10.0.0.9"]);
    assert_eq!(s.signals[0].signal, "closed-after-handshake");
    assert_eq!(s.signals[0].count, 2);
    assert_eq!(s.signals[1].signal, "alert:unknown_ca");
}

#[test]
fn three_spread_beyond_the_window_are_not_a_suspect() {
    let (_dir, store) = temp_store();
    store
        .record(&[
            obs(1000, HOST, JA4),
            obs(1400, HOST, JA4),
            obs(1800, HOST, JA4),
        ])
        .unwrap();
    assert!(store.suspects(RULE, 2000).unwrap().is_empty());
}

#[test]
fn fingerprints_and_hosts_count_separately() {
    let (_dir, store) = temp_store();
    store
        .record(&[
            obs(1, HOST, JA4),
            obs(2, HOST, OTHER_JA4),
            obs(3, "other.example", JA4),
            obs(4, HOST, JA4),
        ])
        .unwrap();
    assert!(store.suspects(RULE, 10).unwrap().is_empty());
}

#[test]
fn report_mode_never_learns() {
    let (_dir, store) = temp_store();
    let out = store
        .record(&[obs(1, HOST, JA4), obs(2, HOST, JA4), obs(3, HOST, JA4)])
        .unwrap();
    assert_eq!(out.learned, 0);
    assert!(store.learned(3).unwrap().is_empty());
    assert_eq!(store.exceptions_version().unwrap(), 0);
}

#[test]
fn learn_mode_learns_for_the_fingerprint_only() {
    let (_dir, store) = temp_store();
    let batch: Vec<_> = (0..3)
        .map(|i| learning(obs(1000 + i, HOST, JA4), Scope::Fingerprint))
        .collect();
    // The first two do not reach the threshold yet.
    assert_eq!(store.record(&batch[..2]).unwrap().learned, 0);
    assert!(store.learned(1001).unwrap().is_empty());
    assert_eq!(store.record(&batch[2..]).unwrap().learned, 1);
    let learned = store.learned(1002).unwrap();
    assert_eq!(learned.len(), 1);
    let l = &learned[0];
    assert_eq!(l.host, HOST);
    assert_eq!(l.ja4.as_deref(), Some(JA4));
    assert_eq!((l.created, l.expires), (1002, 1002 + 3600));
    assert_eq!(
        (l.evidence_count, l.first_seen, l.last_seen),
        (3, 1000, 1002)
    );

    let snapshot = store.exceptions_snapshot(1002).unwrap();
    assert_eq!(snapshot.learned, learned);
    assert_eq!(snapshot.version, store.exceptions_version().unwrap());
    assert!(snapshot.version > 0);

    let suspects = store.suspects(RULE, 1002).unwrap();
    assert_eq!(suspects[0].status, SuspectStatus::Learned);
    assert_eq!(suspects[0].expires, Some(1002 + 3600));
}

#[test]
fn learn_mode_with_host_scope_covers_every_fingerprint() {
    let (_dir, store) = temp_store();
    let batch: Vec<_> = (0..3)
        .map(|i| learning(obs(1000 + i, "Pinned.Example.COM.", JA4), Scope::Host))
        .collect();
    store.record(&batch).unwrap();
    let learned = store.learned(1002).unwrap();
    assert_eq!(learned.len(), 1);
    assert_eq!(learned[0].host, HOST);
    assert_eq!(learned[0].ja4, None);
}

#[test]
fn relearning_extends_the_expiry() {
    let (_dir, store) = temp_store();
    let first: Vec<_> = (0..3)
        .map(|i| learning(obs(1000 + i, HOST, JA4), Scope::Fingerprint))
        .collect();
    store.record(&first).unwrap();
    let version = store.exceptions_version().unwrap();
    store
        .record(&[learning(obs(2000, HOST, JA4), Scope::Fingerprint)])
        .unwrap();
    // 2000 alone is not in a window of 3, so nothing is relearned yet...
    assert_eq!(store.learned(1002).unwrap()[0].expires, 1002 + 3600);
    let more: Vec<_> = (1..3)
        .map(|i| learning(obs(2000 + i, HOST, JA4), Scope::Fingerprint))
        .collect();
    store.record(&more).unwrap();
    // ...three within the window again refresh it.
    let l = &store.learned(2002).unwrap()[0];
    assert_eq!((l.created, l.expires), (1002, 2002 + 3600));
    assert_eq!((l.evidence_count, l.last_seen), (6, 2002));
    assert!(store.exceptions_version().unwrap() > version);
}

#[test]
fn learned_bypass_expires() {
    let (_dir, store) = temp_store();
    let batch: Vec<_> = (0..3)
        .map(|i| learning(obs(1000 + i, HOST, JA4), Scope::Fingerprint))
        .collect();
    store.record(&batch).unwrap();
    let expires = 1002 + 3600;
    assert_eq!(store.learned(expires - 1).unwrap().len(), 1);
    assert!(store.learned(expires).unwrap().is_empty());
    assert!(store
        .exceptions_snapshot(expires)
        .unwrap()
        .learned
        .is_empty());
    assert_eq!(
        store.suspects(RULE, expires).unwrap()[0].status,
        SuspectStatus::Suspect
    );
    assert_eq!(store.prune_expired(expires - 1).unwrap(), 0);
    assert_eq!(store.prune_expired(expires).unwrap(), 1);
}

#[test]
fn rejected_host_is_never_learned_until_cleared() {
    let (_dir, store) = temp_store();
    store
        .reject(HOST, "bank, must inspect", "alice", 10)
        .unwrap();
    let batch: Vec<_> = (0..3)
        .map(|i| learning(obs(1000 + i, HOST, JA4), Scope::Host))
        .collect();
    assert_eq!(store.record(&batch).unwrap().learned, 0);
    assert!(store.learned(1002).unwrap().is_empty());
    assert_eq!(
        store.suspects(RULE, 1002).unwrap()[0].status,
        SuspectStatus::Rejected
    );

    assert!(store.clear_rejection(HOST).unwrap());
    assert!(!store.clear_rejection(HOST).unwrap());
    store
        .record(&[learning(obs(1003, HOST, JA4), Scope::Host)])
        .unwrap();
    assert_eq!(store.learned(1003).unwrap().len(), 1);
}

#[test]
fn approved_pair_is_not_learned() {
    let (_dir, store) = temp_store();
    store
        .approve(HOST, Scope::Fingerprint, Some(JA4), "", "alice", 10)
        .unwrap();
    let batch: Vec<_> = (0..3)
        .map(|i| learning(obs(1000 + i, HOST, JA4), Scope::Fingerprint))
        .collect();
    assert_eq!(store.record(&batch).unwrap().learned, 0);
    // A different fingerprint of the same host is not covered by that approval.
    let other: Vec<_> = (0..3)
        .map(|i| learning(obs(1000 + i, HOST, OTHER_JA4), Scope::Fingerprint))
        .collect();
    assert_eq!(store.record(&other).unwrap().learned, 1);
}

#[test]
fn late_observation_can_complete_an_older_burst() {
    let (_dir, store) = temp_store();
    let mut batch: Vec<_> = [1000, 1001, 5000]
        .iter()
        .map(|&ts| learning(obs(ts, HOST, JA4), Scope::Fingerprint))
        .collect();
    store.record(&batch).unwrap();
    assert!(store.learned(1002).unwrap().is_empty());
    batch = vec![learning(obs(1002, HOST, JA4), Scope::Fingerprint)];
    assert_eq!(store.record(&batch).unwrap().learned, 1);
}

#[test]
fn observations_list_newest_first_and_filter_by_host() {
    let (_dir, store) = temp_store();
    store
        .record(&[
            obs(1, HOST, JA4),
            obs(2, "other.example", JA4),
            obs(3, HOST, OTHER_JA4),
        ])
        .unwrap();
    let all = store.observations(None, 10).unwrap();
    assert_eq!(all.iter().map(|o| o.ts).collect::<Vec<_>>(), vec![3, 2, 1]);
    let host = store.observations(Some("PINNED.example.com"), 1).unwrap();
    assert_eq!(host.len(), 1);
    assert_eq!((host[0].ts, host[0].ja4.as_str()), (3, OTHER_JA4));
    assert_eq!(store.prune_observations(2).unwrap(), 1);
    assert_eq!(store.observations(None, 10).unwrap().len(), 2);
}
