//! Domain patterns (`example.com`, `*.example.com`) and a compiled set of them.
//!
//! A [`Pattern`] is either one host (`example.com`) or a domain with all its subdomains
//! (`*.example.com`, which also matches `example.com` itself). Matching is on normalised names
//! ([`DomainName`]) and at label boundaries only: `*.blocked.test` never matches
//! `evilblocked.test` or `blocked.test.evil.test` (PE-06). Patterns broader than a registrable
//! domain (`*.com`, `*.co.uk`, `*.github.io`) are refused against the public suffix list, and
//! patterns on shared CDN / cloud / user-content domains carry a [`Pattern::warning`]
//! (`DESIGN.md`, "Exceptions are accountable").
//!
//! [`DomainSet`] maps patterns to values (rule ids) and finds the most specific match for a name
//! with one hash lookup per label, independent of the number of patterns.
//!
//! This module knows nothing about what a match means (block, bypass, category); callers attach
//! that to the value.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::name::{self, DomainName, Host, NameError};

#[cfg(test)]
mod tests;

/// One host, or a domain and everything under it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// `example.com`: that host only.
    Exact(DomainName),
    /// `*.example.com`: `example.com` and every name that ends in `.example.com`.
    Subtree(DomainName),
}

/// Which kind of [`Pattern`] matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternKind {
    /// The pattern names one host.
    Exact,
    /// The pattern names a domain and its subdomains.
    Subtree,
}

/// A pattern stored in a [`DomainSet`], borrowed from it (no allocation per lookup).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PatternRef<'a> {
    kind: PatternKind,
    domain: &'a str,
}

/// Why a pattern is refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// The domain part is not a valid host name.
    #[error("invalid domain in pattern: {0}")]
    Invalid(#[from] NameError),
    /// A `*` other than a whole leading `*.` label.
    #[error("{0}")]
    Wildcard(&'static str),
    /// `.example.com`, the Squid spelling of a subtree.
    #[error("a pattern cannot start with a dot; write `*.example.com` for a domain and its subdomains, or `example.com` for one host")]
    LeadingDot,
    /// An IP address; domain patterns match host names only.
    #[error("`{0}` is an IP address; domain patterns match host names only (use a network rule for addresses)")]
    IpLiteral(std::net::IpAddr),
    /// The pattern's domain is itself a public suffix (`com`, `co.uk`, `github.io`), so the
    /// pattern would cover names registered by unrelated parties.
    #[error("{}", public_suffix_message(suffix, *subtree))]
    PublicSuffix {
        /// The public suffix, which is also the pattern's whole domain.
        suffix: String,
        /// Whether the pattern was `*.suffix` (otherwise the bare `suffix`).
        subtree: bool,
    },
}

/// Compiled map from patterns to values; immutable. Lookups cost one hash probe per label of
/// the name, whatever the number of patterns.
#[derive(Clone)]
pub struct DomainSet<V> {
    nodes: HashMap<Box<str>, Node<V>>,
    len: usize,
    depths: Depths,
}

/// Collects patterns for a [`DomainSet`]. The first value inserted for a pattern wins.
pub struct DomainSetBuilder<V> {
    nodes: HashMap<Box<str>, Node<V>>,
    len: usize,
    depths: Depths,
}

/// The values of the (at most two) patterns on one domain. Keeping both in one entry, keyed by
/// the domain text, makes a lookup one probe per label and stores each domain once.
#[derive(Clone)]
struct Node<V> {
    exact: Option<V>,
    subtree: Option<V>,
}

/// Which label counts occur among the stored domains (bit `n` for `n` labels; a name of at most
/// 253 characters has at most 127 labels). A lookup skips suffixes of other lengths: category
/// lists hold 2–4 label domains, so a 5-label name probes 3 suffixes instead of 5.
#[derive(Clone, Copy, Default)]
struct Depths(u128);

// === impl Pattern ===

impl Pattern {
    /// Parses `example.com` (one host) or `*.example.com` (the domain and its subdomains),
    /// normalising the domain like any host name. Refuses other wildcards, IP addresses and
    /// public suffixes: any public suffix as `*.suffix`; as a bare host, only ICANN suffixes
    /// (`com`, `co.uk`). A bare private suffix (`github.io`, `blogspot.com`) is one real host,
    /// run by the suffix operator itself, so it stays allowed; so do single-label names that
    /// only the PSL default rule calls suffixes (`localhost`, `intranet`).
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let (subtree, rest) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if rest.contains('*') || (subtree && rest.is_empty()) {
            return Err(PatternError::Wildcard(wildcard_message(s, subtree)));
        }
        if !subtree && s.starts_with('.') && s.len() > 1 {
            return Err(PatternError::LeadingDot);
        }
        let domain = match Host::parse(rest)? {
            Host::Domain(d) => d,
            Host::Ip(ip) => return Err(PatternError::IpLiteral(ip)),
        };
        check_public_suffix(&domain, subtree)?;
        Ok(if subtree {
            Self::Subtree(domain)
        } else {
            Self::Exact(domain)
        })
    }

    /// The pattern's domain (`example.com` for both `example.com` and `*.example.com`).
    pub fn domain(&self) -> &DomainName {
        match self {
            Self::Exact(d) | Self::Subtree(d) => d,
        }
    }

    /// Exact or subtree.
    pub fn kind(&self) -> PatternKind {
        match self {
            Self::Exact(_) => PatternKind::Exact,
            Self::Subtree(_) => PatternKind::Subtree,
        }
    }

    /// Whether `name` is matched: equal for an exact pattern; equal or a subdomain (at a label
    /// boundary) for a subtree pattern.
    pub fn matches(&self, name: &DomainName) -> bool {
        match self {
            Self::Exact(d) => d == name,
            Self::Subtree(d) => name.is_within(d),
        }
    }

    /// An admin-facing warning when the pattern touches a well-known shared CDN, cloud or
    /// user-content domain (catalog notes §4), where unrelated customers can serve content:
    /// a subtree pattern at, under or above such a domain, or an exact host under one.
    pub fn warning(&self) -> Option<&'static str> {
        let domain = self.domain().as_str();
        let mut found: Option<&SharedSuffix> = None;
        for shared in SHARED_SUFFIXES {
            let hit = name::is_within(domain, shared.suffix)
                || (self.kind() == PatternKind::Subtree && name::is_within(shared.suffix, domain));
            // The longest listed suffix gives the most precise message.
            if hit && found.is_none_or(|f| f.suffix.len() < shared.suffix.len()) {
                found = Some(shared);
            }
        }
        found.map(|shared| match self.kind() {
            PatternKind::Exact => shared.exact,
            PatternKind::Subtree => shared.subtree,
        })
    }

    fn into_parts(self) -> (PatternKind, DomainName) {
        match self {
            Self::Exact(d) => (PatternKind::Exact, d),
            Self::Subtree(d) => (PatternKind::Subtree, d),
        }
    }
}

impl fmt::Display for Pattern {
    /// `example.com` or `*.example.com`, normalised; parses back to the same pattern.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(d) => write!(f, "{d}"),
            Self::Subtree(d) => write!(f, "*.{d}"),
        }
    }
}

impl FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

// === impl PatternRef ===

impl<'a> PatternRef<'a> {
    /// Exact or subtree.
    pub fn kind(&self) -> PatternKind {
        self.kind
    }

    /// The pattern's normalised domain.
    pub fn domain(&self) -> &'a str {
        self.domain
    }

    /// An owned copy.
    pub fn to_pattern(&self) -> Pattern {
        let domain = DomainName::from_normalised(self.domain);
        match self.kind {
            PatternKind::Exact => Pattern::Exact(domain),
            PatternKind::Subtree => Pattern::Subtree(domain),
        }
    }
}

impl fmt::Display for PatternRef<'_> {
    /// Same text as the [`Pattern`] it stands for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PatternKind::Exact => f.write_str(self.domain),
            PatternKind::Subtree => write!(f, "*.{}", self.domain),
        }
    }
}

// === impl DomainSetBuilder ===

impl<V> DomainSetBuilder<V> {
    /// An empty builder.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty builder with room for about `patterns` distinct domains (saves rehashing when
    /// loading a large list whose size is known).
    pub fn with_capacity(patterns: usize) -> Self {
        Self {
            nodes: HashMap::with_capacity(patterns),
            len: 0,
            depths: Depths::default(),
        }
    }

    /// Adds `pattern → value`. If the pattern is already present the first value is kept and
    /// `value` is handed back, so the caller can warn about the duplicate.
    pub fn insert(&mut self, pattern: Pattern, value: V) -> Option<V> {
        let (kind, domain) = pattern.into_parts();
        self.depths.add(label_count(domain.as_str()));
        let node = self.nodes.entry(domain.into_boxed_str()).or_insert(Node {
            exact: None,
            subtree: None,
        });
        let slot = match kind {
            PatternKind::Exact => &mut node.exact,
            PatternKind::Subtree => &mut node.subtree,
        };
        if slot.is_some() {
            return Some(value);
        }
        *slot = Some(value);
        self.len += 1;
        None
    }

    /// Adds one entry of a bulk domain list (such as a UT1 category file: one domain per line,
    /// meaning the domain and its subdomains) as a subtree pattern. A leading `*.` is accepted
    /// and means the same. The name is normalised like any other and public suffixes are still
    /// refused — that check is cheap next to hashing, and without it a stray `com` line in a
    /// downloaded list would match all of `.com` — but shared-CDN warnings and
    /// wildcard diagnostics are skipped. Trimming whitespace and skipping comments is left to
    /// the caller, so nothing is repaired silently.
    ///
    /// Returns `Ok(Some(value))` for a duplicate (first value kept), `Ok(None)` when inserted.
    pub fn insert_lenient(&mut self, entry: &str, value: V) -> Result<Option<V>, PatternError> {
        let rest = entry.strip_prefix("*.").unwrap_or(entry);
        let domain = match Host::parse(rest)? {
            Host::Domain(d) => d,
            Host::Ip(ip) => return Err(PatternError::IpLiteral(ip)),
        };
        check_public_suffix(&domain, true)?;
        Ok(self.insert(Pattern::Subtree(domain), value))
    }

    /// The value stored for exactly this pattern, if any.
    pub fn get(&self, pattern: &Pattern) -> Option<&V> {
        get(&self.nodes, pattern)
    }

    /// Number of distinct patterns added.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Freezes the set.
    pub fn build(mut self) -> DomainSet<V> {
        self.nodes.shrink_to_fit();
        DomainSet {
            nodes: self.nodes,
            len: self.len,
            depths: self.depths,
        }
    }
}

impl<V> Default for DomainSetBuilder<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for DomainSetBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainSetBuilder")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

// === impl DomainSet ===

impl<V> DomainSet<V> {
    /// The most specific pattern matching `name` and its value: an exact pattern for the name
    /// beats a subtree pattern on the same domain, and a longer subtree beats a shorter one.
    ///
    /// Walks the name from itself towards its top-level domain, one hash lookup per suffix at a
    /// label boundary (skipping label counts no stored domain has); the first hit is the most
    /// specific.
    pub fn lookup(&self, name: &DomainName) -> Option<(PatternRef<'_>, &V)> {
        let mut suffix = name.as_str();
        let mut labels = label_count(suffix);
        if self.depths.contains(labels) {
            if let Some((key, node)) = self.nodes.get_key_value(suffix) {
                if let Some(v) = &node.exact {
                    return Some((pattern_ref(PatternKind::Exact, key), v));
                }
                if let Some(v) = &node.subtree {
                    return Some((pattern_ref(PatternKind::Subtree, key), v));
                }
            }
        }
        while let Some((_, parent)) = suffix.split_once('.') {
            suffix = parent;
            labels -= 1;
            if !self.depths.any_up_to(labels) {
                break;
            }
            if !self.depths.contains(labels) {
                continue;
            }
            if let Some((key, node)) = self.nodes.get_key_value(suffix) {
                if let Some(v) = &node.subtree {
                    return Some((pattern_ref(PatternKind::Subtree, key), v));
                }
            }
        }
        None
    }

    /// The value stored for exactly this pattern, if any (no matching).
    pub fn get(&self, pattern: &Pattern) -> Option<&V> {
        get(&self.nodes, pattern)
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set has no patterns.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All patterns and values, in no particular order (sort if showing them).
    pub fn iter(&self) -> impl Iterator<Item = (PatternRef<'_>, &V)> + '_ {
        self.nodes.iter().flat_map(|(key, node)| {
            let exact = node
                .exact
                .as_ref()
                .map(|v| (pattern_ref(PatternKind::Exact, key), v));
            let subtree = node
                .subtree
                .as_ref()
                .map(|v| (pattern_ref(PatternKind::Subtree, key), v));
            exact.into_iter().chain(subtree)
        })
    }
}

impl<V> Default for DomainSet<V> {
    fn default() -> Self {
        DomainSetBuilder::new().build()
    }
}

impl<V> fmt::Debug for DomainSet<V> {
    /// Only the size: a set may hold a million patterns.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainSet")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

// === impl Depths ===

impl Depths {
    fn add(&mut self, labels: u32) {
        self.0 |= 1u128.checked_shl(labels).unwrap_or(0);
    }

    fn contains(self, labels: u32) -> bool {
        self.0 & 1u128.checked_shl(labels).unwrap_or(0) != 0
    }

    /// Whether any stored domain has `labels` labels or fewer.
    fn any_up_to(self, labels: u32) -> bool {
        let mask = 1u128
            .checked_shl(labels.saturating_add(1))
            .map_or(u128::MAX, |bit| bit - 1);
        self.0 & mask != 0
    }
}

// === helpers ===

/// Labels in a normalised name (at most 127, see `Depths`).
fn label_count(name: &str) -> u32 {
    let dots = name.bytes().filter(|&b| b == b'.').count();
    u32::try_from(dots).map_or(u32::MAX, |d| d + 1)
}

fn pattern_ref(kind: PatternKind, domain: &str) -> PatternRef<'_> {
    PatternRef { kind, domain }
}

fn get<'a, V>(nodes: &'a HashMap<Box<str>, Node<V>>, pattern: &Pattern) -> Option<&'a V> {
    let node = nodes.get(pattern.domain().as_str())?;
    match pattern.kind() {
        PatternKind::Exact => node.exact.as_ref(),
        PatternKind::Subtree => node.subtree.as_ref(),
    }
}

/// Refuses a pattern whose domain is itself a public suffix. Subtree: any suffix, ICANN,
/// private (`github.io`: every user's site) or the PSL default rule (an unlisted TLD such as
/// `test` or `corp`, which we cannot tell from a future public one). Exact: ICANN suffixes only,
/// which are not hosts anyone means to name.
fn check_public_suffix(domain: &DomainName, subtree: bool) -> Result<(), PatternError> {
    let name = domain.as_str();
    let Some(suffix) = psl::suffix(name.as_bytes()) else {
        return Ok(());
    };
    let whole = suffix.as_bytes().len() == name.len();
    let refused = whole && (subtree || suffix.typ() == Some(psl::Type::Icann));
    if refused {
        return Err(PatternError::PublicSuffix {
            suffix: name.to_owned(),
            subtree,
        });
    }
    Ok(())
}

fn public_suffix_message(suffix: &str, subtree: bool) -> String {
    if subtree {
        format!(
            "`*.{suffix}` covers the whole public suffix `{suffix}`; patterns must be at or \
             below a registrable domain (such as `*.example.{suffix}`)"
        )
    } else {
        format!(
            "`{suffix}` is a public suffix, not a host; patterns must be at or below a \
             registrable domain (such as `example.{suffix}`)"
        )
    }
}

fn wildcard_message(s: &str, subtree: bool) -> &'static str {
    if s == "*" || s == "*." {
        "`*` alone would match every host; write `*.example.com` for a domain and its subdomains"
    } else if subtree || !s.starts_with('*') {
        "`*` is only allowed as the whole first label, as in `*.example.com`"
    } else {
        "`*` must be followed by a dot, as in `*.example.com` (partial-label wildcards such as \
         `*example.com` are not supported)"
    }
}

/// A well-known domain under which unrelated parties serve content, with the two warnings.
struct SharedSuffix {
    suffix: &'static str,
    subtree: &'static str,
    exact: &'static str,
}

/// Builds [`SHARED_SUFFIXES`] with messages computed at compile time, so `warning` can return
/// `&'static str`.
macro_rules! shared_suffixes {
    ($($suffix:literal => $what:literal,)*) => {
        &[$(SharedSuffix {
            suffix: $suffix,
            subtree: concat!(
                "this pattern covers hosts under `", $suffix, "`, ", $what,
                " used by many unrelated customers; prefer exact, vendor-dedicated host names"
            ),
            exact: concat!(
                "this host is under `", $suffix, "`, ", $what,
                " used by many unrelated customers; make sure it is dedicated to the vendor"
            ),
        },)*]
    };
}

/// Shared infrastructure from catalog notes §4 ("deliberately omitted domains") and the usual
/// multi-tenant hosting suffixes. Several are also private PSL entries, so `*.suffix` itself is
/// refused; these warnings then catch patterns below them and exact hosts.
static SHARED_SUFFIXES: &[SharedSuffix] = shared_suffixes![
    "cloudfront.net" => "a shared CDN",
    "akamaized.net" => "a shared CDN",
    "akamaihd.net" => "a shared CDN",
    "akamaiedge.net" => "a shared CDN",
    "edgesuite.net" => "a shared CDN",
    "edgekey.net" => "a shared CDN",
    "fastly.net" => "a shared CDN",
    "fastlylb.net" => "a shared CDN",
    "fastly-edge.com" => "a shared CDN",
    "azureedge.net" => "a shared CDN",
    "azurefd.net" => "a shared CDN",
    "edgecastcdn.net" => "a shared CDN",
    "llnwd.net" => "a shared CDN",
    "internap.net" => "shared hosting",
    "internapcdn.net" => "a shared CDN",
    "rackcdn.com" => "a shared CDN",
    "b-cdn.net" => "a shared CDN",
    "amazonaws.com" => "shared cloud infrastructure",
    "s3.amazonaws.com" => "shared cloud storage",
    "elasticbeanstalk.com" => "shared cloud hosting",
    "blob.core.windows.net" => "shared cloud storage",
    "core.windows.net" => "shared cloud storage",
    "cloudapp.net" => "shared cloud hosting",
    "cloudapp.azure.com" => "shared cloud hosting",
    "azurewebsites.net" => "shared cloud hosting",
    "trafficmanager.net" => "a shared cloud load balancer",
    "sharepoint.com" => "shared Microsoft 365 tenant hosting",
    "googleapis.com" => "shared cloud APIs and storage",
    "googleusercontent.com" => "shared user content",
    "gstatic.com" => "a shared CDN",
    "appspot.com" => "shared cloud hosting",
    "firebaseapp.com" => "shared cloud hosting",
    "firebase.app" => "shared cloud hosting",
    "web.app" => "shared cloud hosting",
    "clouddrive.com" => "shared cloud storage",
    "herokuapp.com" => "shared cloud hosting",
    "github.io" => "shared user sites",
    "githubusercontent.com" => "shared user content",
    "gitlab.io" => "shared user sites",
    "netlify.app" => "shared user sites",
    "vercel.app" => "shared user sites",
    "pages.dev" => "shared user sites",
    "workers.dev" => "shared cloud hosting",
    "dropboxusercontent.com" => "shared user content",
    "discordapp.net" => "shared user content",
    "fbsbx.com" => "shared user content",
];
