//! Read side: what `sluice pinning list`, the admin API and the gateway's exception reload ask.
//!
//! Every query that reads more than one table runs in one read transaction, so a listing is a
//! consistent picture even while the gateway's writer commits next to it.

use rusqlite::{params, Connection, Row};

use crate::error::{SqlResultExt, StoreError};
use crate::model::{
    Approval, ApprovedException, Exceptions, LearnedBypass, ObservationRow, Rejection, Scope,
    Suspect, SuspectRule, SuspectStatus,
};
use crate::rules;
use crate::Store;

/// Columns of `learned`, in the order [`learned_from_row`] reads them.
const LEARNED_COLUMNS: &str =
    "host, ja4, app, created, expires, evidence_count, first_seen, last_seen";

// === impl Store ===

impl Store {
    /// Host + fingerprint pairs that meet `rule`, with their evidence and review status at
    /// `now`, sorted by host then fingerprint. Pairs stay listed (whatever their status) until
    /// their observations are pruned.
    pub fn suspects(&self, rule: SuspectRule, now: i64) -> Result<Vec<Suspect>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().at(&self.path, "begin read")?;
        let suspects = suspects_in(&tx, rule, now).at(&self.path, "list suspects")?;
        tx.finish().at(&self.path, "end read")?;
        Ok(suspects)
    }

    /// Learned bypasses still in force at `now` (`expires > now`), sorted by host.
    pub fn learned(&self, now: i64) -> Result<Vec<LearnedBypass>, StoreError> {
        learned_in(&self.lock(), now).at(&self.path, "list learned bypasses")
    }

    /// All approvals with their evidence, sorted by host.
    pub fn approvals(&self) -> Result<Vec<Approval>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, host, scope, ja4, note, actor, ts, evidence FROM approvals
                 ORDER BY host, scope, ja4",
            )
            .at(&self.path, "list approvals")?;
        // Evidence is JSON: decoded outside the row closure so its error can name the row.
        let rows = stmt
            .query_map([], |row| {
                let approval = Approval {
                    id: row.get(0)?,
                    host: row.get(1)?,
                    // The CHECK constraint allows only the two scope names.
                    scope: row.get::<_, String>(2)?.parse().unwrap_or(Scope::Host),
                    ja4: non_empty(row.get(3)?),
                    note: row.get(4)?,
                    actor: row.get(5)?,
                    ts: row.get(6)?,
                    evidence: Default::default(),
                };
                Ok((approval, row.get::<_, String>(7)?))
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .at(&self.path, "list approvals")?;
        rows.into_iter()
            .map(|(mut approval, evidence)| {
                approval.evidence = serde_json::from_str(&evidence).map_err(|source| {
                    StoreError::InvalidEvidence {
                        path: self.path.clone(),
                        id: approval.id,
                        source,
                    }
                })?;
                Ok(approval)
            })
            .collect()
    }

    /// All rejected hosts, sorted.
    pub fn rejections(&self) -> Result<Vec<Rejection>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT host, note, actor, ts FROM rejections ORDER BY host")
            .at(&self.path, "list rejections")?;
        stmt.query_map([], |row| {
            Ok(Rejection {
                host: row.get(0)?,
                note: row.get(1)?,
                actor: row.get(2)?,
                ts: row.get(3)?,
            })
        })
        .and_then(Iterator::collect)
        .at(&self.path, "list rejections")
    }

    /// The newest `limit` observations, of `host` only when given, newest first.
    pub fn observations(
        &self,
        host: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObservationRow>, StoreError> {
        let host = host.map(rules::normalize_host);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, ts, host, app, client, user_name, policy, signal, ja4
                 FROM observations WHERE ?1 IS NULL OR host = ?1
                 ORDER BY id DESC LIMIT ?2",
            )
            .at(&self.path, "list observations")?;
        stmt.query_map(params![host, limit], |row| {
            Ok(ObservationRow {
                id: row.get(0)?,
                ts: row.get(1)?,
                host: row.get(2)?,
                app: row.get(3)?,
                client: row.get(4)?,
                user: row.get(5)?,
                policy: row.get(6)?,
                signal: row.get(7)?,
                ja4: row.get(8)?,
            })
        })
        .and_then(Iterator::collect)
        .at(&self.path, "list observations")
    }

    /// A counter that changes whenever learned, approved or rejected state changes, in this
    /// process or another one sharing the file. One indexed read: cheap enough to poll every
    /// second. Expiry of a learned bypass does not change it (time passing is not a write).
    pub fn exceptions_version(&self) -> Result<i64, StoreError> {
        version_in(&self.lock()).at(&self.path, "read exceptions version")
    }

    /// Approved, learned (unexpired at `now`) and rejected state, read in one transaction
    /// together with the version it corresponds to.
    pub fn exceptions_snapshot(&self, now: i64) -> Result<Exceptions, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().at(&self.path, "begin read")?;
        let snapshot = snapshot_in(&tx, now).at(&self.path, "read exceptions")?;
        tx.finish().at(&self.path, "end read")?;
        Ok(snapshot)
    }
}

fn suspects_in(conn: &Connection, rule: SuspectRule, now: i64) -> rusqlite::Result<Vec<Suspect>> {
    // Only timestamps first: the details are fetched for the few pairs that qualify.
    let mut pairs: Vec<(String, String)> = Vec::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT host, ja4, ts FROM observations ORDER BY host, ja4, ts")?;
        let mut rows = stmt.query([])?;
        let mut current: Option<(String, String)> = None;
        let mut times: Vec<i64> = Vec::new();
        while let Some(row) = rows.next()? {
            let key = (row.get::<_, String>(0)?, row.get::<_, String>(1)?);
            if current.as_ref() != Some(&key) {
                if let Some(done) = current.replace(key) {
                    if rules::is_suspect(&times, rule) {
                        pairs.push(done);
                    }
                }
                times.clear();
            }
            times.push(row.get(2)?);
        }
        if let Some(done) = current {
            if rules::is_suspect(&times, rule) {
                pairs.push(done);
            }
        }
    }
    pairs
        .into_iter()
        .map(|(host, ja4)| suspect(conn, host, ja4, now))
        .collect()
}

fn suspect(conn: &Connection, host: String, ja4: String, now: i64) -> rusqlite::Result<Suspect> {
    let evidence = rules::evidence(conn, &host, Some(&ja4))?;
    let (status, expires) = if rules::is_rejected(conn, &host)? {
        (SuspectStatus::Rejected, None)
    } else if rules::is_approved(conn, &host, &ja4)? {
        (SuspectStatus::Approved, None)
    } else {
        match rules::learned_expiry(conn, &host, &ja4, now)? {
            Some(expires) => (SuspectStatus::Learned, Some(expires)),
            None => (SuspectStatus::Suspect, None),
        }
    };
    Ok(Suspect {
        // A qualifying pair has observations, so the bounds exist.
        first_seen: evidence.first_seen.unwrap_or_default(),
        last_seen: evidence.last_seen.unwrap_or_default(),
        host,
        ja4,
        app: evidence.app,
        count: evidence.observations,
        signals: evidence.signals,
        clients: evidence.clients,
        status,
        expires,
    })
}

fn learned_in(conn: &Connection, now: i64) -> rusqlite::Result<Vec<LearnedBypass>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {LEARNED_COLUMNS} FROM learned WHERE expires > ?1 ORDER BY host, ja4"
    ))?;
    let rows = stmt.query_map([now], learned_from_row)?;
    rows.collect()
}

fn learned_from_row(row: &Row<'_>) -> rusqlite::Result<LearnedBypass> {
    Ok(LearnedBypass {
        host: row.get(0)?,
        ja4: non_empty(row.get(1)?),
        app: row.get(2)?,
        created: row.get(3)?,
        expires: row.get(4)?,
        evidence_count: row.get::<_, i64>(5)?.unsigned_abs(),
        first_seen: row.get(6)?,
        last_seen: row.get(7)?,
    })
}

fn version_in(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = 'exceptions_version'")?
        .query_row([], |row| row.get(0))
}

fn snapshot_in(conn: &Connection, now: i64) -> rusqlite::Result<Exceptions> {
    let version = version_in(conn)?;
    let approved = conn
        .prepare_cached("SELECT DISTINCT host, ja4 FROM approvals ORDER BY host, ja4")?
        .query_map([], |row| {
            Ok(ApprovedException {
                host: row.get(0)?,
                ja4: non_empty(row.get(1)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let rejected = conn
        .prepare_cached("SELECT host FROM rejections ORDER BY host")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Exceptions {
        version,
        approved,
        learned: learned_in(conn, now)?,
        rejected,
    })
}

/// The schema stores "whole host" as an empty fingerprint; the API says `None`.
fn non_empty(ja4: String) -> Option<String> {
    (!ja4.is_empty()).then_some(ja4)
}
