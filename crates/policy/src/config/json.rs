//! The policy list as JSON: the body of the admin API's `PUT /api/policy` and the file
//! `<data-dir>/policy.json` that, when present, replaces the configuration file's `[[policy]]`
//! tables (security matrix AD-04).
//!
//! There is deliberately no second validator: the JSON policies are transcoded into the TOML
//! `[[policy]]` form and run through the very same raw parser and converter as the
//! configuration file ([`Config::from_toml`]), so a rule the file refuses is refused here too,
//! and the two can never drift. Only the key paths are renamed (`policy[0]` becomes
//! `policies[0]`) and lines dropped (they would point into the transcoded text); provenance
//! becomes the file plus the JSON key path.
//!
//! What this module does not do: read sockets or decide precedence at run time; the binary
//! calls [`Config::apply_policy_file`] at start and on every reload.

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{Config, ConfigIssue, Entry, Origin, PinningMode, PolicyConfig, RuleLists};

/// File name of the policy override inside the data dir.
pub const POLICY_FILE: &str = "policy.json";

/// The policy file's document: `{"policies": [...]}`, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    policies: Value,
}

/// Policies parsed from JSON, with the converter's warnings.
#[derive(Clone, Debug)]
pub struct JsonPolicies {
    /// The typed policies, in order.
    pub policies: Vec<PolicyConfig>,
    /// Warnings (shared-CDN patterns and the like), keyed by JSON path.
    pub warnings: Vec<ConfigIssue>,
}

// === impl Config ===

impl Config {
    /// Replaces `[[policy]]` with the list in `path` (`<data-dir>/policy.json`) when that file
    /// exists; returns whether it did. A file that exists but cannot be read or is invalid is
    /// an error naming it: an override must never be silently ignored.
    pub fn apply_policy_file(&mut self, path: &Path) -> Result<bool, Vec<ConfigIssue>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(vec![issue("", None, format!("{}: {e}", path.display()))]),
        };
        self.apply_policy_json(&text, path)?;
        Ok(true)
    }

    /// Replaces `[[policy]]` with the list of a `{"policies": [...]}` document that is (or
    /// will be) stored at `path`. Relative paths (`block.hashes`) resolve like the config
    /// file's: against its directory, else against `path`'s.
    pub fn apply_policy_json(&mut self, text: &str, path: &Path) -> Result<(), Vec<ConfigIssue>> {
        let mut de = serde_json::Deserializer::from_str(text);
        let doc: Document = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let line = Some(e.inner().line()).filter(|&l| l > 0);
            vec![issue(&e.path().to_string(), line, e.inner().to_string())]
        })?;
        de.end()
            .map_err(|e| vec![issue("", Some(e.line()), e.to_string())])?;
        let base = self
            .source
            .as_deref()
            .and_then(Path::parent)
            .or_else(|| path.parent())
            .unwrap_or(Path::new("."));
        let parsed = policies_from_json(&doc.policies, &path.display().to_string(), base)?;
        self.policies = parsed.policies;
        self.warnings.extend(parsed.warnings);
        self.policy_override = Some(path.to_path_buf());
        Ok(())
    }
}

/// Parses a JSON array of policies in the `[[policy]]` shape (see the module doc). `file`
/// names them in provenance; `base` resolves relative paths.
pub fn policies_from_json(
    policies: &Value,
    file: &str,
    base: &Path,
) -> Result<JsonPolicies, Vec<ConfigIssue>> {
    let Value::Array(list) = policies else {
        return Err(vec![issue(
            "policies",
            None,
            "must be an array of policy objects",
        )]);
    };
    let mut issues = Vec::new();
    let mut tables = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let key = format!("policies[{i}]");
        if !p.is_object() {
            issues.push(issue(&key, None, "must be an object"));
            continue;
        }
        tables.push(to_toml(p, &key, &mut issues));
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    let mut doc = toml::Table::new();
    doc.insert("policy".into(), toml::Value::Array(tables));
    let text = toml::to_string(&doc).map_err(|e| {
        vec![issue(
            "policies",
            None,
            format!("cannot be represented: {e}"),
        )]
    })?;
    let config = Config::from_toml(&text, file, base)
        .map_err(|issues| issues.into_iter().map(rekey).collect::<Vec<_>>())?;
    let policies = config
        .policies
        .into_iter()
        .enumerate()
        .map(|(i, p)| with_json_origins(p, i, file))
        .collect();
    Ok(JsonPolicies {
        policies,
        warnings: config.warnings.into_iter().map(rekey).collect(),
    })
}

/// JSON → TOML value. JSON has `null` and TOML has not: a `null` is an error at its path
/// (leave the key out instead). Depth is bounded by the JSON parser (serde_json's recursion
/// limit), so this recursion is too.
fn to_toml(v: &Value, key: &str, issues: &mut Vec<ConfigIssue>) -> toml::Value {
    match v {
        Value::Null => {
            issues.push(issue(key, None, "null is not allowed; leave the key out"));
            toml::Value::Boolean(false)
        }
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => {
                issues.push(issue(key, None, format!("number {n} is out of range")));
                toml::Value::Integer(0)
            }
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| to_toml(x, &format!("{key}[{i}]"), issues))
                .collect(),
        ),
        Value::Object(m) => toml::Value::Table(
            m.iter()
                .map(|(k, x)| (k.clone(), to_toml(x, &format!("{key}.{k}"), issues)))
                .collect(),
        ),
    }
}

/// A converter issue about the transcoded text, keyed by the JSON path instead.
fn rekey(mut i: ConfigIssue) -> ConfigIssue {
    if let Some(rest) = i.key.strip_prefix("policy") {
        i.key = format!("policies{rest}");
    } else if i.key.is_empty() {
        i.key = "policies".into();
    }
    // Lines count in the transcoded TOML, which the caller never saw.
    i.line = None;
    i
}

fn issue(key: &str, line: Option<usize>, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key: key.into(),
        line,
        message: message.into(),
    }
}

/// Provenance of JSON policies: the file and the key path (line 0: no line).
fn with_json_origins(mut p: PolicyConfig, i: usize, file: &str) -> PolicyConfig {
    p.origin = json_origin(file, &format!("policies[{i}]"));
    for (name, lists) in [("bypass", &mut p.bypass), ("block", &mut p.block)] {
        let key = format!("policies[{i}].{name}");
        relabel(&mut lists.domains, file, &format!("{key}.domains"));
        relabel(&mut lists.apps, file, &format!("{key}.apps"));
        relabel(&mut lists.categories, file, &format!("{key}.categories"));
        relabel(&mut lists.urls, file, &format!("{key}.urls"));
        relabel(&mut lists.file_types, file, &format!("{key}.file_types"));
        relabel(&mut lists.hashes, file, &format!("{key}.hashes"));
    }
    p
}

fn relabel<T>(entries: &mut [Entry<T>], file: &str, key: &str) {
    for (j, e) in entries.iter_mut().enumerate() {
        e.origin = json_origin(file, &format!("{key}[{j}]"));
    }
}

fn json_origin(file: &str, path: &str) -> Origin {
    Origin {
        file: format!("{file} {path}").into(),
        line: 0,
    }
}

/// The policies as JSON in the `[[policy]]` shape, normalised (patterns, lowercase ids,
/// resolved paths, table-level owner/note/expiry folded into each entry). Parsing it back
/// gives the same policies, and [`policy_hash`] hashes it.
pub fn policies_to_json(policies: &[PolicyConfig]) -> Value {
    Value::Array(policies.iter().map(policy_json).collect())
}

/// SHA-256 (hex) of the canonical serialisation of `policies`: compact JSON of
/// [`policies_to_json`] with object keys sorted, so equal policies hash equal whatever their
/// provenance or the key order they were written in.
pub fn policy_hash(policies: &[PolicyConfig]) -> String {
    let canonical = sorted(policies_to_json(policies));
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Keys sorted at every level, whatever map type serde_json was built with.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut pairs: Vec<(String, Value)> = m.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(pairs.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn policy_json(p: &PolicyConfig) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(p.name));
    let networks: Vec<String> = p.networks.iter().map(ToString::to_string).collect();
    out.insert(
        "match".into(),
        json!({ "networks": networks, "users": p.users }),
    );
    out.insert("decrypt".into(), json!(p.decrypt));
    out.insert("global_bypass".into(), json!(p.global_bypass));
    if let Some(mode) = p.pinning {
        let mode = match mode {
            PinningMode::Report => "report",
            PinningMode::Learn => "learn",
            PinningMode::Off => "off",
        };
        out.insert("pinning".into(), json!(mode));
    }
    out.insert("bypass".into(), lists_json(&p.bypass, false));
    out.insert("block".into(), lists_json(&p.block, true));
    Value::Object(out)
}

fn lists_json(l: &RuleLists, block: bool) -> Value {
    let mut out = Map::new();
    out.insert("domains".into(), entries(&l.domains, ToString::to_string));
    out.insert("apps".into(), entries(&l.apps, Clone::clone));
    out.insert("categories".into(), entries(&l.categories, Clone::clone));
    if block {
        out.insert("urls".into(), entries(&l.urls, Clone::clone));
        out.insert("file_types".into(), entries(&l.file_types, Clone::clone));
        out.insert(
            "hashes".into(),
            entries(&l.hashes, |p| p.display().to_string()),
        );
    }
    Value::Object(out)
}

fn entries<T>(list: &[Entry<T>], text: impl Fn(&T) -> String) -> Value {
    Value::Array(
        list.iter()
            .map(|e| {
                let value = text(&e.value);
                if e.owner.is_none() && e.note.is_none() && e.expires.is_none() {
                    return json!(value);
                }
                let mut m = Map::new();
                m.insert("value".into(), json!(value));
                if let Some(o) = &e.owner {
                    m.insert("owner".into(), json!(o));
                }
                if let Some(n) = &e.note {
                    m.insert("note".into(), json!(n));
                }
                if let Some(x) = e.expires {
                    m.insert("expires".into(), json!(expiry_text(x)));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// `YYYY-MM-DD` when the expiry is the end of a day (what [`super::parse_expiry`] makes of a
/// date), else the unix time, which it also accepts.
fn expiry_text(unix: i64) -> String {
    if (unix + 1).rem_euclid(86_400) != 0 {
        return unix.to_string();
    }
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
