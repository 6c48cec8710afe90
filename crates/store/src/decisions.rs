//! Admin decisions: approve, reject, and undo either; plus retention.
//!
//! A host has at most one kind of decision: approving clears a rejection, and rejecting removes
//! the host's approvals and learned bypasses (so the host is decrypted again from the next
//! connection, and never learned until the rejection is cleared). Every change bumps the
//! exceptions version in the same transaction, which is how a running gateway notices a CLI
//! verb within its poll interval.

use rusqlite::{params, Connection, TransactionBehavior};

use crate::error::{SqlResultExt, StoreError};
use crate::model::{Approval, Rejection, Scope};
use crate::rules;
use crate::Store;

// === impl Store ===

impl Store {
    /// Grants a permanent exception for `host` with the current observations attached as
    /// evidence. For scope `fingerprint` without `ja4`, the host's only observed fingerprint is
    /// used ([`StoreError::NoFingerprint`] / [`StoreError::AmbiguousFingerprint`] otherwise);
    /// for scope `host`, `ja4` is ignored. Approving the same host + scope + fingerprint again
    /// replaces note, actor, time and evidence.
    pub fn approve(
        &self,
        host: &str,
        scope: Scope,
        ja4: Option<&str>,
        note: &str,
        actor: &str,
        now: i64,
    ) -> Result<Approval, StoreError> {
        let host = checked_host(host)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&self.path, "begin approval")?;
        let ja4 = match scope {
            Scope::Host => None,
            Scope::Fingerprint => Some(self.fingerprint_for(&tx, &host, ja4)?),
        };
        let evidence =
            rules::evidence(&tx, &host, ja4.as_deref()).at(&self.path, "collect evidence")?;
        let evidence_json = serde_json::to_string(&evidence).map_err(StoreError::EncodeEvidence)?;
        tx.execute("DELETE FROM rejections WHERE host = ?1", [&host])
            .at(&self.path, "clear rejection")?;
        let id: i64 = tx
            .query_row(
                "INSERT INTO approvals (host, scope, ja4, note, actor, ts, evidence)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (host, scope, ja4) DO UPDATE SET
                     note = excluded.note, actor = excluded.actor, ts = excluded.ts,
                     evidence = excluded.evidence
                 RETURNING id",
                params![
                    host,
                    scope.as_str(),
                    ja4.as_deref().unwrap_or(""),
                    note,
                    actor,
                    now,
                    evidence_json
                ],
                |row| row.get(0),
            )
            .at(&self.path, "write approval")?;
        rules::bump_exceptions_version(&tx).at(&self.path, "bump exceptions version")?;
        tx.commit().at(&self.path, "commit approval")?;
        tracing::info!(
            host,
            scope = scope.as_str(),
            actor,
            "Pinning exception approved"
        );
        Ok(Approval {
            id,
            host,
            scope,
            ja4,
            note: note.to_string(),
            actor: actor.to_string(),
            ts: now,
            evidence,
        })
    }

    /// Rejects `host`: it is never learned again until [`Self::clear_rejection`], and its
    /// approvals and learned bypasses are removed. Rejecting again replaces note, actor and time.
    pub fn reject(
        &self,
        host: &str,
        note: &str,
        actor: &str,
        now: i64,
    ) -> Result<Rejection, StoreError> {
        let host = checked_host(host)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&self.path, "begin rejection")?;
        tx.execute(
            "INSERT INTO rejections (host, note, actor, ts) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (host) DO UPDATE SET
                 note = excluded.note, actor = excluded.actor, ts = excluded.ts",
            params![host, note, actor, now],
        )
        .at(&self.path, "write rejection")?;
        tx.execute("DELETE FROM approvals WHERE host = ?1", [&host])
            .at(&self.path, "remove approvals")?;
        tx.execute("DELETE FROM learned WHERE host = ?1", [&host])
            .at(&self.path, "remove learned bypasses")?;
        rules::bump_exceptions_version(&tx).at(&self.path, "bump exceptions version")?;
        tx.commit().at(&self.path, "commit rejection")?;
        tracing::info!(host, actor, "Pinning exception rejected");
        Ok(Rejection {
            host,
            note: note.to_string(),
            actor: actor.to_string(),
            ts: now,
        })
    }

    /// Lifts the rejection of `host`; returns whether there was one.
    pub fn clear_rejection(&self, host: &str) -> Result<bool, StoreError> {
        let host = checked_host(host)?;
        let removed = self.delete_and_bump("DELETE FROM rejections WHERE host = ?1", &host)?;
        Ok(removed > 0)
    }

    /// Removes every approval of `host` (all scopes and fingerprints); returns how many.
    pub fn revoke_approval(&self, host: &str) -> Result<usize, StoreError> {
        let host = checked_host(host)?;
        self.delete_and_bump("DELETE FROM approvals WHERE host = ?1", &host)
    }

    /// Deletes observations older than `before` (unix seconds); returns how many. Suspects
    /// are computed from observations, so this also retires old suspects. Approvals keep their
    /// evidence snapshot.
    pub fn prune_observations(&self, before: i64) -> Result<usize, StoreError> {
        self.lock()
            .execute("DELETE FROM observations WHERE ts < ?1", [before])
            .at(&self.path, "prune observations")
    }

    /// Deletes learned bypasses expired at `now`; returns how many. They no longer applied,
    /// so the exceptions version does not change.
    pub fn prune_expired(&self, now: i64) -> Result<usize, StoreError> {
        self.lock()
            .execute("DELETE FROM learned WHERE expires <= ?1", [now])
            .at(&self.path, "prune learned bypasses")
    }

    /// Runs a one-parameter DELETE and bumps the version if it removed anything.
    fn delete_and_bump(&self, sql: &str, host: &str) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&self.path, "begin change")?;
        let removed = tx.execute(sql, [host]).at(&self.path, "delete decision")?;
        if removed > 0 {
            rules::bump_exceptions_version(&tx).at(&self.path, "bump exceptions version")?;
        }
        tx.commit().at(&self.path, "commit change")?;
        Ok(removed)
    }

    /// The fingerprint a fingerprint-scoped approval is for.
    fn fingerprint_for(
        &self,
        conn: &Connection,
        host: &str,
        given: Option<&str>,
    ) -> Result<String, StoreError> {
        if let Some(ja4) = given.filter(|ja4| !ja4.is_empty()) {
            return Ok(ja4.to_string());
        }
        let mut stmt = conn
            .prepare_cached("SELECT DISTINCT ja4 FROM observations WHERE host = ?1 ORDER BY ja4")
            .at(&self.path, "list fingerprints")?;
        let mut candidates: Vec<String> = stmt
            .query_map([host], |row| row.get(0))
            .and_then(Iterator::collect)
            .at(&self.path, "list fingerprints")?;
        match candidates.len() {
            0 => Err(StoreError::NoFingerprint {
                host: host.to_string(),
            }),
            1 => Ok(candidates.remove(0)),
            _ => Err(StoreError::AmbiguousFingerprint {
                host: host.to_string(),
                candidates,
            }),
        }
    }
}

/// Normalised host, refusing an empty one (which would match nothing and confuse listings).
fn checked_host(host: &str) -> Result<String, StoreError> {
    let host = rules::normalize_host(host);
    if host.is_empty() {
        return Err(StoreError::EmptyHost);
    }
    Ok(host)
}
