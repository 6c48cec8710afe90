//! The configuration file as serde sees it: every table with `deny_unknown_fields`, values that
//! can fail later kept as `Spanned` so errors name their line. `super` turns this into the typed
//! [`super::Config`].

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    pub(crate) proxy: RawProxy,
    pub(crate) ca: RawCa,
    pub(crate) admin: RawAdmin,
    pub(crate) log: RawLog,
    pub(crate) upstream: RawUpstream,
    pub(crate) auth: RawAuth,
    pub(crate) catalog: RawCatalog,
    pub(crate) pinning: RawPinning,
    pub(crate) policy: Vec<S<RawPolicy>>,
    pub(crate) inspect: RawInspect,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawProxy {
    pub(crate) listen: Option<Vec<S<String>>>,
    pub(crate) connect_ports: Option<Vec<S<i64>>>,
    pub(crate) non_tls: Option<S<String>>,
    pub(crate) max_client_hello: Option<S<String>>,
    pub(crate) max_connections: Option<S<i64>>,
    pub(crate) timeouts: RawTimeouts,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawTimeouts {
    pub(crate) header: Option<S<String>>,
    pub(crate) client_hello: Option<S<String>>,
    pub(crate) connect: Option<S<String>>,
    pub(crate) handshake: Option<S<String>>,
    pub(crate) idle: Option<S<String>>,
    pub(crate) shutdown_grace: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCa {
    pub(crate) cert: Option<S<String>>,
    pub(crate) key: Option<S<String>>,
    pub(crate) leaf_cache: Option<S<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAdmin {
    pub(crate) listen: Option<S<String>>,
    pub(crate) token_file: Option<S<String>>,
    pub(crate) pac_direct: Option<Vec<S<String>>>,
    pub(crate) tls_names: Option<Vec<S<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLog {
    pub(crate) access: Option<S<String>>,
    pub(crate) fail: Option<S<String>>,
    pub(crate) mode: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawUpstream {
    pub(crate) extra_roots: Option<Vec<S<String>>>,
    pub(crate) crls: Option<Vec<S<String>>>,
    pub(crate) hosts_file: Option<S<String>>,
    pub(crate) allow_private: Option<S<RawAllowPrivate>>,
    pub(crate) dns_servers: Option<Vec<S<String>>>,
    pub(crate) dns_timeout: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawAllowPrivate {
    All(bool),
    Nets(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAuth {
    pub(crate) htpasswd: Option<S<String>>,
    pub(crate) realm: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCatalog {
    pub(crate) extra: Option<Vec<S<String>>>,
    pub(crate) category_lists: Option<Vec<S<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawPinning {
    pub(crate) mode: Option<S<String>>,
    pub(crate) quiet_window: Option<S<String>>,
    pub(crate) threshold: Option<S<i64>>,
    pub(crate) window: Option<S<String>>,
    pub(crate) learned_ttl: Option<S<String>>,
    pub(crate) scope: Option<S<String>>,
    pub(crate) retention: Option<S<String>>,
    pub(crate) max_observations: Option<S<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawPolicy {
    pub(crate) name: Option<S<String>>,
    #[serde(rename = "match")]
    pub(crate) matches: RawMatch,
    pub(crate) decrypt: Option<bool>,
    pub(crate) global_bypass: Option<bool>,
    pub(crate) pinning: Option<S<String>>,
    pub(crate) bypass: RawList,
    pub(crate) block: RawList,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMatch {
    pub(crate) networks: Option<Vec<S<String>>>,
    pub(crate) users: Option<Vec<S<String>>>,
}

/// `bypass` and `block` share one shape; keys that only make sense for `block` (urls,
/// file_types, hashes) are refused under `bypass` by the typed layer.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawList {
    pub(crate) domains: Vec<S<RawEntry>>,
    pub(crate) apps: Vec<S<RawEntry>>,
    pub(crate) categories: Vec<S<RawEntry>>,
    pub(crate) urls: Vec<S<RawEntry>>,
    pub(crate) file_types: Vec<S<RawEntry>>,
    pub(crate) hashes: Vec<S<RawEntry>>,
    pub(crate) owner: Option<String>,
    pub(crate) note: Option<String>,
    pub(crate) expires: Option<S<String>>,
}

/// A list entry: a bare string, or a table carrying accountability fields.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawEntry {
    Plain(String),
    Detailed(RawDetailedEntry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDetailedEntry {
    pub(crate) value: String,
    pub(crate) owner: Option<String>,
    pub(crate) note: Option<String>,
    pub(crate) expires: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawInspect {
    pub(crate) icap: Option<S<String>>,
    pub(crate) icap_timeout: Option<S<String>>,
    pub(crate) fail: Option<S<String>>,
    pub(crate) max_scan_size: Option<S<String>>,
    pub(crate) oversize: Option<S<String>>,
}
