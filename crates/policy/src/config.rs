//! The configuration: parsed from TOML into raw serde structs (`raw`), then turned into typed
//! values with every error collected — each naming its key path and line — so `sluice config
//! check` can report them all at once and the gateway never starts half-configured.
//!
//! Every key is optional; `Config::default()` is the embedded default that `sluice run` uses
//! with no file at all. File reading happens only in [`Config::load`]; [`Config::from_toml`] is
//! pure.

mod json;
mod raw;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use self::raw::{RawConfig, S};
use crate::domain::Pattern;

pub use self::json::{
    policies_from_json, policies_to_json, policy_hash, JsonPolicies, POLICY_FILE,
};

/// One problem found in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `policy[1].bypass.domains[0]`.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong, for an administrator.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)
    }
}

/// Where a rule was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file (`<embedded default>` for the built-in configuration).
    pub file: Arc<str>,
    /// 1-based line; 0 when the source has no lines to point at (a JSON policy list, whose
    /// key path is part of `file` instead).
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}", self.file);
        }
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A list entry with its provenance and optional accountability fields.
#[derive(Clone, Debug)]
pub struct Entry<T> {
    /// The parsed value.
    pub value: T,
    /// The value as written.
    pub text: String,
    /// Where it was written.
    pub origin: Origin,
    /// Who owns this exception.
    pub owner: Option<String>,
    /// Why it exists.
    pub note: Option<String>,
    /// Unix time after which it no longer applies.
    pub expires: Option<i64>,
}

/// What to do with non-TLS bytes inside a CONNECT tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonTls {
    /// Close the tunnel and log it (default).
    Block,
    /// Relay the bytes untouched.
    Tunnel,
}

/// Pinning handling mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinningMode {
    /// Record observations and suspects only (default).
    Report,
    /// Also learn bypasses for suspects.
    Learn,
    /// Record nothing.
    Off,
}

/// Scope of a learned bypass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnScope {
    /// Only clients with the same TLS fingerprint (default).
    Fingerprint,
    /// Every client of the host.
    Host,
}

/// Which private/loopback destinations may be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowPrivate {
    /// None (default).
    None,
    /// All of them (tests, labs).
    All,
    /// Only these networks.
    Nets(Vec<IpNet>),
}

/// Where the access log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output (default).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// `[log] fail`: what the gateway does while the access log cannot be written (full disk,
/// file size limit, I/O error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFail {
    /// Keep serving; the records are dropped and counted (default).
    Open,
    /// Refuse new requests with 503 `log_unavailable` until a write succeeds again; requests
    /// already under way finish.
    Closed,
}

/// Deadlines of the data path.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// Reading a request head (default 30 s).
    pub header: Duration,
    /// Waiting for the ClientHello after `200 Connection Established` (default 10 s).
    pub client_hello: Duration,
    /// Connecting to the origin (default 10 s).
    pub connect: Duration,
    /// Each TLS handshake, client and upstream side (default 10 s).
    pub handshake: Duration,
    /// An idle connection or tunnel (default 5 min).
    pub idle: Duration,
    /// How long in-flight connections may finish after SIGTERM (default 10 s).
    pub shutdown_grace: Duration,
}

/// `[proxy]`.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Listener addresses (default `127.0.0.1:3128`).
    pub listen: Vec<SocketAddr>,
    /// Ports CONNECT may reach (default `[443]`).
    pub connect_ports: Vec<u16>,
    /// Non-TLS bytes in a tunnel (default block).
    pub non_tls: NonTls,
    /// Largest ClientHello accepted (default 64 KiB).
    pub max_client_hello: usize,
    /// Concurrent client connections (default 20,000).
    pub max_connections: usize,
    /// Deadlines.
    pub timeouts: Timeouts,
}

/// `[ca]`.
#[derive(Clone, Debug, Default)]
pub struct CaConfig {
    /// An existing CA certificate instead of the generated one.
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
    /// Minted leaves kept in memory (default 10,000).
    pub leaf_cache: usize,
}

/// `[admin]`.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Listener (default `127.0.0.1:9128`).
    pub listen: SocketAddr,
    /// Token file (default `<data-dir>/admin.token`).
    pub token_file: Option<PathBuf>,
    /// Hosts the PAC file sends direct.
    pub pac_direct: Vec<String>,
    /// The names the admin certificate covers when the listener is off loopback (HTTPS), and
    /// the only DNS names accepted in `Host` there besides IP literals and `localhost`.
    /// `None` (default): the listen address (or, for 0.0.0.0 / `::`, `localhost`, 127.0.0.1
    /// and ::1) and the machine's host name, which the binary looks up.
    pub tls_names: Option<Vec<crate::name::Host>>,
}

/// `[upstream]`.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Extra PEM trust anchors for origins.
    pub extra_roots: Vec<PathBuf>,
    /// CRL files (PEM or DER) origins' certificates are checked against (default none:
    /// revocation is not checked).
    pub crls: Vec<PathBuf>,
    /// Names resolved from this file first (default `/etc/hosts`).
    pub hosts_file: Option<PathBuf>,
    /// Private destinations allowed (default none).
    pub allow_private: AllowPrivate,
    /// DNS servers asked over UDP (TCP when a reply is truncated) instead of the system
    /// resolver; port 53 unless given (default empty: the system resolver).
    pub dns_servers: Vec<SocketAddr>,
    /// Total deadline of one name resolution, whichever resolver (default 5 s).
    pub dns_timeout: Duration,
}

/// `[pinning]`.
#[derive(Clone, Debug)]
pub struct PinningConfig {
    /// Default mode for policies (default report).
    pub mode: PinningMode,
    /// Handshake done, no data, closed within this: an observation (default 2 s).
    pub quiet_window: Duration,
    /// Observations that make a suspect (default 3).
    pub threshold: u32,
    /// Window the threshold counts in (default 10 min).
    pub window: Duration,
    /// Lifetime of a learned bypass (default 7 days).
    pub learned_ttl: Duration,
    /// Scope of a learned bypass (default fingerprint).
    pub scope: LearnScope,
    /// How long observations are kept (default 30 days).
    pub retention: Duration,
    /// Most observations kept; the oldest beyond are pruned (default 100,000).
    pub max_observations: u64,
}

/// What happens when a body cannot be scanned, or is too big to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// Block it (default for scan failures).
    Closed,
    /// Deliver it, logged.
    Open,
}

/// `[inspect]`: content inspection of decrypted and plain-HTTP traffic.
#[derive(Clone, Debug)]
pub struct InspectConfig {
    /// ICAP service URL (`icap://host:port/service`), if any.
    pub icap: Option<String>,
    /// How long one ICAP exchange may take before it counts as a scan failure (default 15 s).
    pub icap_timeout: Duration,
    /// A body that cannot be scanned (ICAP down, timeout): `closed` (default) blocks it.
    pub fail: FailMode,
    /// Bodies up to this size are held and scanned before the client gets a byte (16 MiB).
    pub max_scan_size: usize,
    /// Larger bodies: `allow` (default, logged) or `block`.
    pub oversize: FailMode,
}

/// One `[[policy]]`.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// Its name (`default` is the fallback).
    pub name: String,
    /// Where it was written.
    pub origin: Origin,
    /// Client networks it applies to (empty: any).
    pub networks: Vec<IpNet>,
    /// Proxy users it applies to (empty: any).
    pub users: Vec<String>,
    /// Decrypt what no rule exempts (default true).
    pub decrypt: bool,
    /// Apply the catalog's global bypass list (default true).
    pub global_bypass: bool,
    /// Pinning mode (default `[pinning] mode`).
    pub pinning: Option<PinningMode>,
    /// Exceptions from decryption.
    pub bypass: RuleLists,
    /// Blocks.
    pub block: RuleLists,
}

/// The lists of a `bypass` or `block` table.
#[derive(Clone, Debug, Default)]
pub struct RuleLists {
    /// Domain patterns.
    pub domains: Vec<Entry<Pattern>>,
    /// Catalog application ids.
    pub apps: Vec<Entry<String>>,
    /// Category names (lowercase).
    pub categories: Vec<Entry<String>>,
    /// URL rules (block only).
    pub urls: Vec<Entry<String>>,
    /// File types (block only).
    pub file_types: Vec<Entry<String>>,
    /// Hash list files (block only).
    pub hashes: Vec<Entry<PathBuf>>,
}

/// The whole typed configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[proxy]`.
    pub proxy: ProxyConfig,
    /// `[ca]`.
    pub ca: CaConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[log] access`.
    pub access_log: LogTarget,
    /// `[log] fail`.
    pub log_fail: LogFail,
    /// `[log] mode`: permission bits of the access log and the admin audit trail when sluice
    /// creates them, and the most an existing one keeps (default 0o600; 0o640 allowed).
    pub log_mode: u32,
    /// `[upstream]`.
    pub upstream: UpstreamConfig,
    /// `[auth] htpasswd`.
    pub htpasswd: Option<PathBuf>,
    /// `[auth] realm`.
    pub auth_realm: String,
    /// `[catalog] extra`.
    pub catalog_extra: Vec<PathBuf>,
    /// `[catalog] category_lists`.
    pub category_lists: Vec<PathBuf>,
    /// `[pinning]`.
    pub pinning: PinningConfig,
    /// `[[policy]]` in file order.
    pub policies: Vec<PolicyConfig>,
    /// `[inspect]`.
    pub inspect: InspectConfig,
    /// Warnings that do not stop the configuration from loading.
    pub warnings: Vec<ConfigIssue>,
    /// The file it came from.
    pub source: Option<PathBuf>,
    /// The policy list came from this file (`<data-dir>/policy.json`, written by the admin
    /// API) instead of the `[[policy]]` tables; `None`: from the configuration file.
    pub policy_override: Option<PathBuf>,
}

/// The name of the built-in configuration in messages and provenance.
pub const EMBEDDED: &str = "<embedded default>";

impl Default for Config {
    fn default() -> Self {
        match Self::from_toml("", EMBEDDED, Path::new("/")) {
            Ok(config) => config,
            // The empty document has no keys, so nothing can fail; keep a loud marker anyway.
            Err(issues) => unreachable!("embedded default config is invalid: {issues:?}"),
        }
    }
}

impl Config {
    /// Reads and parses a configuration file; relative paths inside resolve against its dir.
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigIssue>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigIssue {
                key: String::new(),
                line: None,
                message: format!("{}: {e}", path.display()),
            }]
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::from_toml(&text, &path.display().to_string(), base)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses configuration text. `file` names it in provenance; `base` resolves relative paths.
    pub fn from_toml(text: &str, file: &str, base: &Path) -> Result<Self, Vec<ConfigIssue>> {
        let de = toml::Deserializer::new(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let line = e.inner().span().map(|s| line_of(text, s.start));
            // `Spanned` values show up in the path as a private field name; users know the
            // key path without it (`policy[0].bypass`, not `policy[0].$__serde…value.bypass`).
            let key = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "")
                .replace("$__serde_spanned_private_value", "");
            vec![ConfigIssue {
                key: if key == "." { String::new() } else { key },
                line,
                message: e.inner().message().to_string(),
            }]
        })?;
        let mut cx = Cx {
            text,
            file: file.into(),
            base,
            issues: vec![],
            warnings: vec![],
        };
        let config = cx.config(raw);
        if cx.issues.is_empty() {
            Ok(Self {
                warnings: cx.warnings,
                ..config
            })
        } else {
            Err(cx.issues)
        }
    }

    /// The policy named `default`, if the file has one.
    pub fn default_policy(&self) -> Option<&PolicyConfig> {
        self.policies.iter().find(|p| p.name == "default")
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Conversion context: collects issues instead of stopping at the first.
struct Cx<'a> {
    text: &'a str,
    file: Arc<str>,
    base: &'a Path,
    issues: Vec<ConfigIssue>,
    warnings: Vec<ConfigIssue>,
}

impl Cx<'_> {
    fn line<T>(&self, v: &S<T>) -> usize {
        line_of(self.text, v.span().start)
    }

    fn error<T>(&mut self, key: impl Into<String>, at: &S<T>, message: impl Into<String>) {
        let line = Some(self.line(at));
        self.issues.push(ConfigIssue {
            key: key.into(),
            line,
            message: message.into(),
        });
    }

    fn warn<T>(&mut self, key: impl Into<String>, at: &S<T>, message: impl Into<String>) {
        let line = Some(self.line(at));
        self.warnings.push(ConfigIssue {
            key: key.into(),
            line,
            message: message.into(),
        });
    }

    fn path(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&mut self, key: &str, v: &Option<S<String>>, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.error(key, v, "must be greater than zero");
                default
            }
            Err(e) => {
                self.error(
                    key,
                    v,
                    format!(
                        "invalid duration `{}` ({e}); use e.g. \"10s\", \"5m\", \"7d\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn size(&mut self, key: &str, v: &Option<S<String>>, default: usize) -> usize {
        let Some(v) = v else { return default };
        match parse_size(v.get_ref()) {
            Some(n) if n > 0 => n,
            _ => {
                self.error(
                    key,
                    v,
                    format!(
                        "invalid size `{}`; use e.g. \"64KiB\", \"16MiB\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        key: &str,
        v: &Option<S<String>>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(v) = v else { return default };
        if let Some((_, t)) = options
            .iter()
            .find(|(name, _)| *name == v.get_ref().as_str())
        {
            return *t;
        }
        let names: Vec<_> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.error(
            key,
            v,
            format!("`{}` is not one of {}", v.get_ref(), names.join(", ")),
        );
        default
    }

    fn count(&mut self, key: &str, v: &Option<S<i64>>, min: i64, max: i64, default: i64) -> i64 {
        let Some(v) = v else { return default };
        let n = *v.get_ref();
        if (min..=max).contains(&n) {
            n
        } else {
            self.error(key, v, format!("{n} is out of range {min}..={max}"));
            default
        }
    }

    fn socket(&mut self, key: &str, v: &S<String>) -> Option<SocketAddr> {
        match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    key,
                    v,
                    format!(
                        "`{}` is not an address:port such as \"127.0.0.1:3128\" or \"[::1]:3128\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn net(&mut self, key: &str, v: &S<String>) -> Option<IpNet> {
        let s = v.get_ref();
        let parsed = s
            .parse::<IpNet>()
            .ok()
            .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from));
        if parsed.is_none() {
            self.error(
                key,
                v,
                format!("`{s}` is not a network in CIDR form such as \"10.0.0.0/8\""),
            );
        }
        parsed
    }
}

mod convert;

/// Parses "64KiB", "16MiB", "1GiB", "100KB", "512" into bytes.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Earliest accepted expiry, 0000-01-01T00:00:00Z, in unix seconds.
const EXPIRY_MIN: i64 = -62_167_219_200;
/// Latest accepted expiry, 9999-12-31T23:59:59Z, in unix seconds.
const EXPIRY_MAX: i64 = 253_402_300_799;

/// Parses `YYYY-MM-DD` (end of that day, UTC) or a unix timestamp into unix seconds.
///
/// Both are limited to the years 0000 to 9999 (what `YYYY` spells). Without a bound, a year
/// such as `3696222810255917069` overflowed `days_from_civil` (a panic with overflow checks, a
/// wrapped and possibly already past expiry without; found by the `config` fuzz target,
/// fuzz/regressions/config/), and a timestamp near `i64::MAX` overflowed the JSON rendering of
/// the policy (`expiry_text`).
pub fn parse_expiry(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return (EXPIRY_MIN..=EXPIRY_MAX).contains(&n).then_some(n);
    }
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.get(..2)?.parse().ok()?;
    if !(0..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=days_in_month(y, m)).contains(&d)
    {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + 86_399)
}

/// Days in month `m` of year `y` (proleptic Gregorian), so `2030-02-31` is refused rather than
/// read as March 3rd.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
