//! The dashboard: decisions over the last hour (a stacked bar chart in inline SVG), top
//! bypass reasons, top blocked apps, the pinning suspects waiting, and the latest decisions.
//!
//! It reads the access log's recent-records buffer (the last 2,000 records), so on a busy
//! gateway "the last hour" is the part of the hour that buffer still holds; the page says so.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use serde_json::Value;
use sluice_store::SuspectStatus;

use super::{decision_badge, esc, page as layout, Nav};
use crate::auth::Caller;
use crate::AdminState;

/// Width of one chart bar.
const BUCKET: Duration = Duration::from_secs(300);
/// Bars in the chart (one hour).
const BUCKETS: usize = 12;
const DECISIONS: [&str; 3] = ["decrypt", "bypass", "block"];
const COLOURS: [&str; 3] = ["#2f5fa8", "#2e8b57", "#b03a2e"];

/// Counts behind the dashboard.
#[derive(Debug, Default)]
pub struct Summary {
    /// Per bucket (oldest first), counts of decrypt, bypass, block.
    pub buckets: Vec<[u64; 3]>,
    /// Totals of decrypt, bypass, block over the hour.
    pub totals: [u64; 3],
    /// Bypass reasons, most frequent first.
    pub bypass_reasons: Vec<(String, u64)>,
    /// Blocked apps (or what blocked), most frequent first.
    pub blocked_apps: Vec<(String, u64)>,
    /// Records of the last hour considered.
    pub records: usize,
}

/// `GET /`.
pub async fn page(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
) -> Html<String> {
    let recent: Vec<Value> =
        s.rt.log
            .recent()
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect();
    let sum = summarize(&recent, SystemTime::now());
    let suspects = suspects_waiting(&s).await;
    let mut body = String::from("<h1>Dashboard</h1>");
    body.push_str(&cards(&sum, suspects));
    body.push_str("<h2>Decisions over the last hour</h2>");
    body.push_str(&chart(&sum));
    body.push_str("<h2>Top bypass reasons</h2>");
    body.push_str(&top_table("Reason", &sum.bypass_reasons));
    body.push_str("<h2>Top blocked apps</h2>");
    body.push_str(&top_table("Application (or rule)", &sum.blocked_apps));
    body.push_str("<h2>Latest decisions</h2>");
    body.push_str(&latest(&recent));
    layout("Dashboard", Nav::Dashboard, Some(&caller), &body)
}

/// One decision per connection and per plain-HTTP request: requests inside a decrypted tunnel
/// share their connection's decision and are not counted again.
fn is_decision(r: &Value) -> bool {
    match r["kind"].as_str() {
        Some("connect") => true,
        Some("request") => r["url"].as_str().is_some_and(|u| u.starts_with("http://")),
        _ => false,
    }
}

/// Counts the records of the hour before `now`.
pub fn summarize(records: &[Value], now: SystemTime) -> Summary {
    let mut sum = Summary {
        buckets: vec![[0; 3]; BUCKETS],
        ..Summary::default()
    };
    let now = crate::api::unix(now);
    let span = BUCKET.as_secs() as i64 * BUCKETS as i64;
    let mut reasons: HashMap<String, u64> = HashMap::new();
    let mut blocked: HashMap<String, u64> = HashMap::new();
    for r in records.iter().filter(|r| is_decision(r)) {
        let Some(ts) = r["ts"].as_str().and_then(parse_ts) else {
            continue;
        };
        let age = now - ts;
        if !(0..span).contains(&age) {
            continue;
        }
        let Some(d) = DECISIONS
            .iter()
            .position(|d| r["decision"].as_str() == Some(d))
        else {
            continue;
        };
        sum.records += 1;
        let bucket = BUCKETS - 1 - (age / BUCKET.as_secs() as i64) as usize;
        sum.buckets[bucket][d] += 1;
        sum.totals[d] += 1;
        let reason = r["reason"].as_str().unwrap_or("-").to_string();
        match DECISIONS[d] {
            "bypass" => *reasons.entry(reason).or_default() += 1,
            "block" => {
                let what = r["app"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("(no app: {reason})"));
                *blocked.entry(what).or_default() += 1;
            }
            _ => {}
        }
    }
    sum.bypass_reasons = top(reasons);
    sum.blocked_apps = top(blocked);
    sum
}

fn top(counts: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(10);
    v
}

fn parse_ts(ts: &str) -> Option<i64> {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn cards(sum: &Summary, suspects: Option<usize>) -> String {
    let mut out = String::new();
    for (i, d) in DECISIONS.iter().enumerate() {
        out.push_str(&format!(
            "<div class=\"card\" id=\"count-{d}\"><b class=\"{d}\">{}</b>{d}</div>",
            sum.totals[i]
        ));
    }
    let suspects = suspects.map_or_else(|| "–".to_string(), |n| n.to_string());
    out.push_str(&format!(
        "<div class=\"card\" id=\"suspects\"><b>{suspects}</b><a href=\"/pinning\">pinning suspects</a></div>"
    ));
    out
}

/// A stacked bar per five minutes, decrypt at the bottom, with a `<title>` per bar.
pub fn chart(sum: &Summary) -> String {
    let (w, h, pad) = (660u64, 180u64, 24u64);
    let bar_w = (w - 2 * pad) / BUCKETS as u64;
    let max = sum
        .buckets
        .iter()
        .map(|b| b.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_h = h - 2 * pad;
    let mut svg = format!(
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"decisions per 5 minutes\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\
         <text x=\"{pad}\" y=\"14\" font-size=\"11\" fill=\"#555\">max {max} per 5 min</text>"
    );
    for (i, b) in sum.buckets.iter().enumerate() {
        let x = pad + i as u64 * bar_w + 2;
        let mut y = h - pad;
        for (d, n) in b.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let bh = (n * plot_h / max).max(1);
            y -= bh;
            let minutes = (BUCKETS - i) * 5;
            svg.push_str(&format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{bh}\" fill=\"{}\">\
                 <title>{n} {} (-{minutes} min)</title></rect>",
                bar_w - 4,
                COLOURS[d],
                DECISIONS[d]
            ));
        }
    }
    let base = h - pad;
    svg.push_str(&format!(
        "<line x1=\"{pad}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#999\"/>\
         <text x=\"{pad}\" y=\"{}\" font-size=\"11\" fill=\"#555\">-60 min</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#555\" text-anchor=\"end\">now</text>",
        w - pad,
        h - 8,
        w - pad,
        h - 8
    ));
    for (i, d) in DECISIONS.iter().enumerate() {
        let x = w / 2 - 90 + i as u64 * 70;
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#333\">{d}</text>",
            h - 17,
            COLOURS[i],
            x + 14,
            h - 8
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn top_table(what: &str, rows: &[(String, u64)]) -> String {
    if rows.is_empty() {
        return "<p>None in the last hour.</p>".into();
    }
    let mut t = format!("<table><tr><th>{}</th><th>Count</th></tr>", esc(what));
    for (k, n) in rows {
        t.push_str(&format!(
            "<tr><td>{}</td><td class=\"n\">{n}</td></tr>",
            esc(k)
        ));
    }
    t.push_str("</table>");
    t
}

fn latest(records: &[Value]) -> String {
    let rows: Vec<&Value> = records.iter().rev().take(20).collect();
    if rows.is_empty() {
        return "<p>No traffic yet.</p>".into();
    }
    let s = |r: &Value, k: &str| esc(r[k].as_str().unwrap_or("-"));
    let mut t = String::from(
        "<table id=\"latest\"><tr><th>Time</th><th>Client</th><th>Kind</th><th>Host</th>\
         <th>Decision</th><th>Reason</th><th>App</th><th>Error</th></tr>",
    );
    for r in rows {
        let host = r["sni"].as_str().or(r["host"].as_str()).unwrap_or("-");
        t.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s(r, "ts"),
            s(r, "client"),
            s(r, "kind"),
            esc(host),
            decision_badge(r["decision"].as_str().unwrap_or("-")),
            s(r, "reason"),
            s(r, "app"),
            s(r, "error"),
        ));
    }
    t.push_str("</table><p>JSON with filters: <code>GET /api/decisions?decision=&amp;host=&amp;user=&amp;limit=</code></p>");
    t
}

async fn suspects_waiting(s: &AdminState) -> Option<usize> {
    let rule = crate::api::suspect_rule(s);
    crate::api::with_store(s, move |store| {
        let now = crate::check::unix_now();
        Ok(store
            .suspects(rule, now)?
            .iter()
            .filter(|x| x.status == SuspectStatus::Suspect)
            .count())
    })
    .await
    .ok()
}
