//! The values the store takes and returns: plain data, `Serialize` for `--json` and the admin
//! API, no database handles.
//!
//! Times are unix seconds chosen by the caller (the data path stamps observations; the CLI passes
//! `now`), never read from a clock here, so that rules are testable with fixed numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a learned bypass or an approval covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every client of the host.
    Host,
    /// Only clients whose TLS fingerprint (JA4) matches; browsers visiting the same host are
    /// still decrypted.
    Fingerprint,
}

/// When a host + fingerprint becomes a suspect: at least `threshold` observations within
/// `window_secs` of each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspectRule {
    /// Observations needed (`pinning.threshold`, default 3). 0 is treated as 1.
    pub threshold: u32,
    /// Width of the window in seconds (`pinning.window`, default 600).
    pub window_secs: i64,
}

/// How a suspect is learned when its policy says `pinning = "learn"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnParams {
    /// Lifetime of the learned bypass from the newest observation (`pinning.learned_ttl`,
    /// default 7 days).
    pub ttl_secs: i64,
    /// What the bypass covers (`pinning.scope`, default fingerprint).
    pub scope: Scope,
}

/// One pinning observation as the data path reports it, with the rule of the policy that
/// applied, so the writer can evaluate suspects and learning without knowing the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// When the client gave up (unix seconds).
    pub ts: i64,
    /// The host (SNI, else CONNECT host), normalised by the caller.
    pub host: String,
    /// Catalog app id, when the catalog knows the host.
    pub app: Option<String>,
    /// Client address (IP text).
    pub client: String,
    /// Proxy user, when authenticated.
    pub user: Option<String>,
    /// Name of the policy that applied.
    pub policy: String,
    /// What the client did: `alert:unknown_ca`, `closed-after-handshake`, ...
    pub signal: String,
    /// The client's JA4 fingerprint.
    pub ja4: String,
    /// Suspect rule of the policy.
    pub rule: SuspectRule,
    /// `Some` when the policy learns (`pinning = "learn"`), `None` when it only reports.
    pub learn: Option<LearnParams>,
}

/// A stored observation, as listed by [`crate::Store::observations`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservationRow {
    /// Row id, increasing with insertion.
    pub id: i64,
    /// When (unix seconds).
    pub ts: i64,
    /// Host.
    pub host: String,
    /// Catalog app id.
    pub app: Option<String>,
    /// Client address.
    pub client: String,
    /// Proxy user.
    pub user: Option<String>,
    /// Policy name.
    pub policy: String,
    /// Signal, e.g. `alert:unknown_ca`.
    pub signal: String,
    /// JA4 fingerprint.
    pub ja4: String,
}

/// How often one signal was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalCount {
    /// The signal, e.g. `closed-after-handshake`.
    pub signal: String,
    /// Number of observations with it.
    pub count: u64,
}

/// Summary of the observations behind a decision: what an approval keeps as its evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Number of observations.
    pub observations: u64,
    /// Signals, most frequent first.
    pub signals: Vec<SignalCount>,
    /// Distinct client addresses, sorted (at most [`crate::MAX_LISTED`]).
    pub clients: Vec<String>,
    /// Distinct fingerprints, sorted (at most [`crate::MAX_LISTED`]).
    pub ja4s: Vec<String>,
    /// The most recent catalog app id seen for the host.
    pub app: Option<String>,
    /// Oldest observation.
    pub first_seen: Option<i64>,
    /// Newest observation.
    pub last_seen: Option<i64>,
}

/// Where a suspect stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuspectStatus {
    /// Waiting for review.
    Suspect,
    /// A learned bypass covering it is in force.
    Learned,
    /// An admin approved an exception covering it.
    Approved,
    /// An admin rejected the host: never learned.
    Rejected,
}

/// A host + fingerprint that met the suspect rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspect {
    /// Host.
    pub host: String,
    /// JA4 fingerprint.
    pub ja4: String,
    /// Most recent catalog app id.
    pub app: Option<String>,
    /// All observations of this host + fingerprint.
    pub count: u64,
    /// Signals, most frequent first.
    pub signals: Vec<SignalCount>,
    /// Distinct client addresses, sorted (at most [`crate::MAX_LISTED`]).
    pub clients: Vec<String>,
    /// Oldest observation.
    pub first_seen: i64,
    /// Newest observation.
    pub last_seen: i64,
    /// Review state.
    pub status: SuspectStatus,
    /// Expiry of the learned bypass when `status` is `learned`.
    pub expires: Option<i64>,
}

/// A learned bypass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedBypass {
    /// Host.
    pub host: String,
    /// Fingerprint it is scoped to; `None` = every client of the host.
    pub ja4: Option<String>,
    /// Catalog app id, when known.
    pub app: Option<String>,
    /// When it was first learned.
    pub created: i64,
    /// When it stops applying (exclusive).
    pub expires: i64,
    /// Observations behind it when last (re)learned.
    pub evidence_count: u64,
    /// Oldest of those observations.
    pub first_seen: i64,
    /// Newest of those observations.
    pub last_seen: i64,
}

/// A permanent exception granted by an admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Row id.
    pub id: i64,
    /// Host.
    pub host: String,
    /// What it covers.
    pub scope: Scope,
    /// The fingerprint for scope `fingerprint`; `None` for scope `host`.
    pub ja4: Option<String>,
    /// Why, in the admin's words.
    pub note: String,
    /// Who approved.
    pub actor: String,
    /// When (unix seconds).
    pub ts: i64,
    /// The observations at the time of approval.
    pub evidence: Evidence,
}

/// A host an admin said must never be learned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Host.
    pub host: String,
    /// Why.
    pub note: String,
    /// Who rejected.
    pub actor: String,
    /// When (unix seconds).
    pub ts: i64,
}

/// One approved exception as the gateway needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovedException {
    /// Host.
    pub host: String,
    /// Fingerprint; `None` = every client of the host.
    pub ja4: Option<String>,
}

/// Everything the gateway compiles into its in-memory exception lookup, read in one
/// transaction together with the version it corresponds to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exceptions {
    /// [`crate::Store::exceptions_version`] at the time of the snapshot.
    pub version: i64,
    /// Approved exceptions.
    pub approved: Vec<ApprovedException>,
    /// Learned bypasses unexpired at the snapshot's `now`. The gateway must still compare
    /// `expires` with its clock: expiry does not change the version.
    pub learned: Vec<LearnedBypass>,
    /// Rejected hosts.
    pub rejected: Vec<String>,
}

/// A scope name other than `host` or `fingerprint`.
#[derive(Debug, thiserror::Error)]
#[error("unknown scope {0:?}: expected \"host\" or \"fingerprint\"")]
pub struct UnknownScope(pub String);

// === impl Scope ===

impl Scope {
    /// The name used in config, CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Fingerprint => "fingerprint",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host" => Ok(Self::Host),
            "fingerprint" => Ok(Self::Fingerprint),
            other => Err(UnknownScope(other.to_string())),
        }
    }
}

// === impl SuspectRule ===

impl Default for SuspectRule {
    /// The design defaults: 3 observations within 10 minutes.
    fn default() -> Self {
        Self {
            threshold: 3,
            window_secs: 600,
        }
    }
}

// === impl LearnParams ===

impl Default for LearnParams {
    /// The design defaults: 7 days, scoped to the fingerprint.
    fn default() -> Self {
        Self {
            ttl_secs: 7 * 24 * 3600,
            scope: Scope::Fingerprint,
        }
    }
}

// === impl SuspectStatus ===

impl SuspectStatus {
    /// The name shown by `sluice pinning list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suspect => "suspect",
            Self::Learned => "learned",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }
}
