//! The suspect rule and the lookups shared by the writer and the queries.
//!
//! A host + fingerprint is a suspect when some window of `window_secs` holds at least
//! `threshold` of its observations. Any such window ends at one of the observations, so "some
//! observation has `threshold` observations within `window_secs` before it (itself included)"
//! is the same rule; [`peak_window`] computes it. Once a suspect, always a suspect (until its
//! observations are pruned): a later lone observation does not un-suspect a burst.
//!
//! This module decides nothing about learning; `record` does, using these answers.

use rusqlite::{params, Connection, OptionalExtension};

use crate::model::{Evidence, SignalCount, SuspectRule};
use crate::MAX_LISTED;

/// The most observations that fit in one window of `window_secs`, given sorted timestamps.
pub(crate) fn peak_window(sorted_ts: &[i64], window_secs: i64) -> usize {
    let window = window_secs.max(0);
    let mut start = 0;
    let mut peak = 0;
    for (end, &t) in sorted_ts.iter().enumerate() {
        while sorted_ts[start] < t.saturating_sub(window) {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    peak
}

/// Whether `sorted_ts` meets `rule`.
pub(crate) fn is_suspect(sorted_ts: &[i64], rule: SuspectRule) -> bool {
    let threshold = usize::try_from(rule.threshold.max(1)).unwrap_or(usize::MAX);
    peak_window(sorted_ts, rule.window_secs) >= threshold
}

/// Timestamps of a host + fingerprint between `from` and `to` (inclusive), sorted.
pub(crate) fn timestamps(
    conn: &Connection,
    host: &str,
    ja4: &str,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ts FROM observations WHERE host = ?1 AND ja4 = ?2 AND ts BETWEEN ?3 AND ?4
         ORDER BY ts",
    )?;
    let rows = stmt.query_map(params![host, ja4, from, to], |row| row.get(0))?;
    rows.collect()
}

/// Summary of the observations of `host`, restricted to `ja4` when given.
pub(crate) fn evidence(
    conn: &Connection,
    host: &str,
    ja4: Option<&str>,
) -> rusqlite::Result<Evidence> {
    // `?2 IS NULL OR ja4 = ?2` keeps one statement per question; the (host, ja4, ts) index
    // still narrows to the host.
    const FILTER: &str = "FROM observations WHERE host = ?1 AND (?2 IS NULL OR ja4 = ?2)";
    let (observations, first_seen, last_seen) = conn.query_row(
        &format!("SELECT count(*), min(ts), max(ts) {FILTER}"),
        params![host, ja4],
        |row| Ok((row.get::<_, i64>(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let mut signals = conn.prepare_cached(&format!(
        "SELECT signal, count(*) AS n {FILTER} GROUP BY signal ORDER BY n DESC, signal"
    ))?;
    let signals = signals
        .query_map(params![host, ja4], |row| {
            Ok(SignalCount {
                signal: row.get(0)?,
                count: row.get::<_, i64>(1)?.unsigned_abs(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let clients = distinct(conn, "client", FILTER, host, ja4)?;
    let ja4s = distinct(conn, "ja4", FILTER, host, ja4)?;
    let app = conn
        .query_row(
            &format!("SELECT app {FILTER} AND app IS NOT NULL ORDER BY ts DESC, id DESC LIMIT 1"),
            params![host, ja4],
            |row| row.get(0),
        )
        .optional()?;
    Ok(Evidence {
        observations: observations.unsigned_abs(),
        signals,
        clients,
        ja4s,
        app,
        first_seen,
        last_seen,
    })
}

/// Distinct values of `column` under `filter`, sorted, at most [`MAX_LISTED`].
fn distinct(
    conn: &Connection,
    column: &str,
    filter: &str,
    host: &str,
    ja4: Option<&str>,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT DISTINCT {column} {filter} ORDER BY {column} LIMIT {MAX_LISTED}"
    ))?;
    let rows = stmt.query_map(params![host, ja4], |row| row.get(0))?;
    rows.collect()
}

/// Whether an admin rejected `host`.
pub(crate) fn is_rejected(conn: &Connection, host: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM rejections WHERE host = ?1")?
        .exists(params![host])
}

/// Whether an approval covers `host` for a client with fingerprint `ja4`.
pub(crate) fn is_approved(conn: &Connection, host: &str, ja4: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM approvals WHERE host = ?1 AND (scope = 'host' OR ja4 = ?2)")?
        .exists(params![host, ja4])
}

/// Expiry of the latest-expiring learned bypass that covers `host` + `ja4` at `now`.
pub(crate) fn learned_expiry(
    conn: &Connection,
    host: &str,
    ja4: &str,
    now: i64,
) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT max(expires) FROM learned WHERE host = ?1 AND (ja4 = '' OR ja4 = ?2)
         AND expires > ?3",
    )?
    .query_row(params![host, ja4, now], |row| row.get(0))
}

/// Records that learned, approved or rejected state changed, for
/// [`crate::Store::exceptions_version`]. Must run in the transaction that made the change.
pub(crate) fn bump_exceptions_version(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = value + 1 WHERE key = 'exceptions_version'")?
        .execute([])?;
    Ok(())
}

/// Lowercases and drops a trailing dot, as hosts compare in the design. The data path and the
/// CLI already normalise (IDNs included); this only keeps `Example.COM.` typed at the CLI from
/// becoming a separate host.
pub(crate) fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_window_counts_inclusive_edges() {
        assert_eq!(peak_window(&[], 600), 0);
        assert_eq!(peak_window(&[5], 600), 1);
        assert_eq!(peak_window(&[0, 600, 1200], 600), 2);
        assert_eq!(peak_window(&[0, 300, 600], 600), 3);
        assert_eq!(peak_window(&[0, 400, 800], 600), 2);
        assert_eq!(peak_window(&[0, 0, 0, 1000, 1001], 10), 3);
        assert_eq!(peak_window(&[1, 2, 3], 0), 1);
        assert_eq!(peak_window(&[7, 7], 0), 2);
    }

    #[test]
    fn burst_stays_suspect_after_a_late_lone_observation() {
        let rule = SuspectRule {
            threshold: 3,
            window_secs: 600,
        };
        assert!(is_suspect(&[0, 10, 20, 100_000], rule));
        assert!(!is_suspect(&[0, 10], rule));
        let zero = SuspectRule {
            threshold: 0,
            window_secs: 600,
        };
        assert!(is_suspect(&[1], zero));
        assert!(!is_suspect(&[], zero));
    }

    #[test]
    fn normalize_host_lowercases_and_drops_trailing_dot() {
        assert_eq!(normalize_host(" Example.COM. "), "example.com");
    }
}
