//! Writing observations and applying the learning rule, in one transaction per batch.
//!
//! For every host + fingerprint the batch touched, the suspect rule is evaluated over the
//! observations near the batch's timestamps (so a late-arriving observation can complete an
//! older burst too). In learn mode a suspect gets a learned bypass unless the host is rejected
//! or an approval already covers it; re-learning refreshes expiry and evidence. The clock is the
//! newest observation of the pair: the store never reads one.

use std::collections::BTreeMap;

use rusqlite::{params, Transaction};

use crate::model::{LearnParams, Observation, Scope, SuspectRule};
use crate::rules;

/// What one batch did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Observations inserted.
    pub recorded: usize,
    /// Learned bypasses created or refreshed.
    pub learned: usize,
}

/// What the batch says about one host + fingerprint.
struct PairInBatch {
    /// Oldest and newest timestamp of the pair in the batch.
    oldest: i64,
    newest: i64,
    /// Rule and learning of the pair's last observation in the batch: the policy in force now.
    rule: SuspectRule,
    learn: Option<LearnParams>,
    app: Option<String>,
}

/// Inserts `batch` and applies the suspect and learning rules, inside `tx`. The caller commits.
pub(crate) fn record_batch(
    tx: &Transaction<'_>,
    batch: &[Observation],
) -> rusqlite::Result<BatchOutcome> {
    let mut pairs: BTreeMap<(String, String), PairInBatch> = BTreeMap::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO observations (ts, host, app, client, user_name, policy, signal, ja4)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for obs in batch {
            let host = rules::normalize_host(&obs.host);
            insert.execute(params![
                obs.ts, host, obs.app, obs.client, obs.user, obs.policy, obs.signal, obs.ja4
            ])?;
            let pair = pairs
                .entry((host, obs.ja4.clone()))
                .or_insert_with(|| PairInBatch {
                    oldest: obs.ts,
                    newest: obs.ts,
                    rule: obs.rule,
                    learn: obs.learn,
                    app: None,
                });
            pair.oldest = pair.oldest.min(obs.ts);
            pair.newest = pair.newest.max(obs.ts);
            pair.rule = obs.rule;
            pair.learn = obs.learn;
            if obs.app.is_some() {
                pair.app.clone_from(&obs.app);
            }
        }
    }
    let mut outcome = BatchOutcome {
        recorded: batch.len(),
        learned: 0,
    };
    for ((host, ja4), pair) in &pairs {
        if learn_pair(tx, host, ja4, pair)? {
            outcome.learned += 1;
        }
    }
    if outcome.learned > 0 {
        rules::bump_exceptions_version(tx)?;
    }
    Ok(outcome)
}

/// Evaluates one pair; returns whether a learned bypass was created or refreshed.
fn learn_pair(
    tx: &Transaction<'_>,
    host: &str,
    ja4: &str,
    pair: &PairInBatch,
) -> rusqlite::Result<bool> {
    let Some(learn) = pair.learn else {
        // Report mode: suspects are computed when listed, nothing to store.
        return Ok(false);
    };
    let window = pair.rule.window_secs.max(0);
    let near = rules::timestamps(
        tx,
        host,
        ja4,
        pair.oldest.saturating_sub(window),
        pair.newest.saturating_add(window),
    )?;
    if !rules::is_suspect(&near, pair.rule)
        || rules::is_rejected(tx, host)?
        || rules::is_approved(tx, host, ja4)?
    {
        return Ok(false);
    }
    let scoped_ja4 = match learn.scope {
        Scope::Host => None,
        Scope::Fingerprint => Some(ja4),
    };
    let evidence = rules::evidence(tx, host, scoped_ja4)?;
    let now = pair.newest;
    tx.prepare_cached(
        "INSERT INTO learned
             (host, ja4, app, created, expires, evidence_count, first_seen, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (host, ja4) DO UPDATE SET
             -- An expired row being learned again counts as new.
             created = CASE WHEN learned.expires <= excluded.created
                            THEN excluded.created ELSE learned.created END,
             expires = max(learned.expires, excluded.expires),
             app = coalesce(excluded.app, learned.app),
             evidence_count = excluded.evidence_count,
             first_seen = excluded.first_seen,
             last_seen = excluded.last_seen",
    )?
    .execute(params![
        host,
        scoped_ja4.unwrap_or(""),
        pair.app.as_deref().or(evidence.app.as_deref()),
        now,
        now.saturating_add(learn.ttl_secs),
        i64::try_from(evidence.observations).unwrap_or(i64::MAX),
        evidence.first_seen.unwrap_or(now),
        evidence.last_seen.unwrap_or(now),
    ])?;
    tracing::info!(
        host,
        ja4,
        scope = learn.scope.as_str(),
        observations = evidence.observations,
        "Pinning bypass learned"
    );
    Ok(true)
}
