//! `sluice pinning export`: suspects as catalog `[[app]]` tables, for an admin to review and
//! paste into a catalog file.
//!
//! One table per host (its fingerprints merged), rejected hosts left out. The values are
//! deliberately unassuming — vendor `unknown`, category `Unreviewed`, `global_bypass = false` —
//! and `sources` says the entry rests on observations only. It does not look hosts up in the
//! catalog or guess vendors.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::error::StoreError;
use crate::model::{Suspect, SuspectRule, SuspectStatus};
use crate::Store;

#[derive(Serialize)]
struct CatalogFile {
    app: Vec<CatalogApp>,
}

/// The catalog fields the export fills in, in catalog order.
#[derive(Serialize)]
struct CatalogApp {
    id: String,
    name: String,
    vendor: &'static str,
    category: &'static str,
    global_bypass: bool,
    domains: Vec<String>,
    sources: Vec<String>,
}

// === impl Store ===

impl Store {
    /// Suspects under `rule` at `now` as catalog TOML, one `[[app]]` per host.
    pub fn export_suspects_toml(&self, rule: SuspectRule, now: i64) -> Result<String, StoreError> {
        let suspects = self.suspects(rule, now)?;
        render(&suspects, now)
    }
}

/// Renders `suspects` (sorted by host, as [`Store::suspects`] returns them).
pub(crate) fn render(suspects: &[Suspect], now: i64) -> Result<String, StoreError> {
    let mut by_host: BTreeMap<&str, Vec<&Suspect>> = BTreeMap::new();
    for suspect in suspects {
        if suspect.status != SuspectStatus::Rejected {
            by_host.entry(&suspect.host).or_default().push(suspect);
        }
    }
    let app = by_host
        .into_iter()
        .map(|(host, pairs)| CatalogApp {
            id: slug(host),
            name: host.to_string(),
            vendor: "unknown",
            category: "Unreviewed",
            global_bypass: false,
            domains: vec![host.to_string()],
            sources: vec![source_line(&pairs)],
        })
        .collect();
    let mut out = format!(
        "# sluice pinning export, {}: suspects for review, not a vetted catalog.\n\
         # Check each host (vendor documentation, who uses it) before adding it to a catalog file.\n\n",
        utc(now)
    );
    out.push_str(&toml::to_string(&CatalogFile { app })?);
    Ok(out)
}

/// "sluice pinning observations: 5 observations, signals closed-after-handshake x4, ..."
fn source_line(pairs: &[&Suspect]) -> String {
    let count: u64 = pairs.iter().map(|s| s.count).sum();
    let mut signals: BTreeMap<&str, u64> = BTreeMap::new();
    for signal in pairs.iter().flat_map(|s| &s.signals) {
        *signals.entry(&signal.signal).or_default() += signal.count;
    }
    let mut signals: Vec<_> = signals.into_iter().collect();
    signals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let first = pairs.iter().map(|s| s.first_seen).min().unwrap_or_default();
    let last = pairs.iter().map(|s| s.last_seen).max().unwrap_or_default();
    let mut line = format!("sluice pinning observations: {count} observations, signals ");
    for (i, (signal, n)) in signals.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(line, "{sep}{signal} x{n}");
    }
    let fingerprints: Vec<&str> = pairs.iter().map(|s| s.ja4.as_str()).collect();
    let statuses: Vec<&str> = pairs.iter().map(|s| s.status.as_str()).collect();
    let _ = write!(
        line,
        "; fingerprints {}; first seen {}, last seen {}; status {}",
        fingerprints.join(", "),
        utc(first),
        utc(last),
        statuses.join(", ")
    );
    if let Some(app) = pairs.iter().find_map(|s| s.app.as_deref()) {
        let _ = write!(line, "; catalog app {app}");
    }
    line
}

/// A catalog id from a host: lowercase letters and digits, runs of anything else as one `-`.
pub(crate) fn slug(host: &str) -> String {
    let mut id = String::with_capacity(host.len());
    for c in host.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    while id.ends_with('-') {
        id.pop();
    }
    id
}

/// Unix seconds as RFC 3339 UTC (`2026-01-31T12:00:00Z`), without a date-time dependency.
pub(crate) fn utc(ts: i64) -> String {
    let (days, secs) = (ts.div_euclid(86_400), ts.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`,
/// <https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn slug_keeps_letters_and_digits() {
        assert_eq!(slug("API.Example-1.com"), "api-example-1-com");
        assert_eq!(slug("*.x..y."), "x-y");
    }
}
