//! URL rules (`block.urls`): a host pattern plus a path prefix or glob, matched per request.
//!
//! A rule is `host/path`. The host is a domain pattern as everywhere else in sluice
//! (`example.com`, or `*.example.com` for the domain and its subdomains; compared
//! case-insensitively, being normalised names). The path is compared case-sensitively and is
//! either
//! - a **prefix** (no `*`): `example.com/admin` matches `/admin` and everything below it
//!   (`/admin/`, `/admin/users`), but not `/administrator`; a prefix ending in `/` matches any
//!   path that starts with it; no path at all (`example.com`) matches every path;
//! - a **glob** (with `*`): `*` matches any run of characters, `/` included, and the glob must
//!   cover the whole path: `example.com/downloads/*.exe`.
//!
//! Only the path is matched: a query (`?…`) or fragment in the request is ignored, and one in a
//! rule is refused. Request paths are normalised before matching so that spelling cannot evade
//! a rule: percent-encoded unreserved characters are decoded and other escapes upper-cased
//! (RFC 3986 §6.2.2.1–6.2.2.2), `//` runs collapse, and `.`/`..` segments are resolved
//! (RFC 3986 §5.2.4), so `/a/../downloads/x` and `/%64ownloads/x` both meet `/downloads/*`.
//! Because origin servers differ in how they treat escaped reserved characters (`%2F`), a rule
//! also matches when it meets the path with every escape decoded: blocking errs on the side of
//! blocking.
//!
//! This module does not decide what a match means; the caller attaches that to the value.

use std::collections::HashMap;
use std::fmt;

use sluice_policy::domain::{Pattern, PatternError};
use sluice_policy::name::DomainName;

/// A compiled, immutable list of URL rules, each carrying a caller's value. Lookups cost one
/// hash probe per label of the host plus a path comparison per rule on that host.
pub struct UrlRules<T> {
    rules: Vec<Rule<T>>,
    /// Rule indices by domain, for `example.com` rules.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Rule indices by domain, for `*.example.com` rules.
    subtree: HashMap<Box<str>, Vec<usize>>,
}

/// One parsed rule: `host-pattern/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlPattern {
    host: Pattern,
    /// The normalised path as written (for display).
    path_text: String,
    path: PathPattern,
}

/// Why a URL rule is refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum UrlRuleError {
    /// The rule is empty or has no host before the path.
    #[error("a URL rule is `host/path` (e.g. `example.com/downloads/*`); the host is missing")]
    MissingHost,
    /// `http://…`: rules name no scheme, they apply to http and https alike.
    #[error("write the URL rule without a scheme (`example.com/path`); it applies to http and https alike")]
    Scheme,
    /// The host part is not a valid domain pattern.
    #[error("invalid host in URL rule: {0}")]
    Host(#[from] PatternError),
    /// A `?` or `#` in the rule; only the path is matched.
    #[error("a URL rule matches the path only; remove the part from `{0}` on")]
    QueryOrFragment(char),
}

struct Rule<T> {
    pattern: UrlPattern,
    value: T,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PathPattern {
    /// The path itself and everything below it.
    Prefix(Vec<u8>),
    /// Literal pieces between the `*`s: the first anchors the start, the last the end.
    Glob(Vec<Vec<u8>>),
}

// === impl UrlRules ===

impl<T> UrlRules<T> {
    /// Compiles `(rule text, value)` pairs. Every refused rule is reported with its index in
    /// `entries` and a message, not only the first.
    pub fn build(entries: Vec<(String, T)>) -> Result<Self, Vec<(usize, String)>> {
        let mut errors = Vec::new();
        let mut rules = Self {
            rules: Vec::with_capacity(entries.len()),
            exact: HashMap::new(),
            subtree: HashMap::new(),
        };
        for (index, (text, value)) in entries.into_iter().enumerate() {
            match UrlPattern::parse(&text) {
                Ok(pattern) => rules.push(pattern, value),
                Err(e) => errors.push((index, format!("`{text}`: {e}"))),
            }
        }
        if errors.is_empty() {
            Ok(rules)
        } else {
            Err(errors)
        }
    }

    /// The value of the first rule (in build order) that matches `host` and `path`. `path` is
    /// the request target's path (`uri.path()`); a query or fragment in it is ignored.
    pub fn find(&self, host: &DomainName, path: &str) -> Option<&T> {
        let candidates = self.candidates(host);
        if candidates.is_empty() {
            return None;
        }
        let normalised = normalize_path(path);
        let decoded = normalize_path_bytes(&percent_decode_all(strip_query(path).as_bytes()));
        let decoded = (decoded != normalised).then_some(decoded);
        candidates
            .into_iter()
            .filter(|&i| {
                let p = &self.rules[i].pattern.path;
                p.matches(&normalised) || decoded.as_deref().is_some_and(|d| p.matches(d))
            })
            .min()
            .map(|i| &self.rules[i].value)
    }

    /// The parsed rules, in build order, with their values.
    pub fn iter(&self) -> impl Iterator<Item = (&UrlPattern, &T)> + '_ {
        self.rules.iter().map(|r| (&r.pattern, &r.value))
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (then [`find`](Self::find) never matches).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn push(&mut self, pattern: UrlPattern, value: T) {
        let index = self.rules.len();
        let map = match pattern.host {
            Pattern::Exact(_) => &mut self.exact,
            Pattern::Subtree(_) => &mut self.subtree,
        };
        map.entry(pattern.host.domain().as_str().into())
            .or_default()
            .push(index);
        self.rules.push(Rule { pattern, value });
    }

    /// Indices of the rules whose host pattern matches `host`: its exact rules, and the subtree
    /// rules of the host and of every parent domain.
    fn candidates(&self, host: &DomainName) -> Vec<usize> {
        let name = host.as_str();
        let mut out = Vec::new();
        out.extend(self.exact.get(name).into_iter().flatten());
        out.extend(self.subtree.get(name).into_iter().flatten());
        for (dot, _) in name.match_indices('.') {
            out.extend(self.subtree.get(&name[dot + 1..]).into_iter().flatten());
        }
        out
    }
}

impl<T> fmt::Debug for UrlRules<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|r| r.pattern.to_string()))
            .finish()
    }
}

// === impl UrlPattern ===

impl UrlPattern {
    /// Parses `example.com/path`, `*.example.com/path/*` or a bare host pattern (every path).
    pub fn parse(s: &str) -> Result<Self, UrlRuleError> {
        if s.contains("://") {
            return Err(UrlRuleError::Scheme);
        }
        let (host, path) = match s.find('/') {
            Some(slash) => s.split_at(slash),
            None => (s, "/"),
        };
        if host.is_empty() {
            return Err(UrlRuleError::MissingHost);
        }
        if let Some(c) = path.chars().find(|c| matches!(c, '?' | '#')) {
            return Err(UrlRuleError::QueryOrFragment(c));
        }
        let host = Pattern::parse(host)?;
        let normalised = normalize_path_bytes(path.as_bytes());
        let path_text = String::from_utf8_lossy(&normalised).into_owned();
        let path = if normalised.contains(&b'*') {
            PathPattern::Glob(
                normalised
                    .split(|&b| b == b'*')
                    .map(<[u8]>::to_vec)
                    .collect(),
            )
        } else {
            PathPattern::Prefix(normalised)
        };
        Ok(Self {
            host,
            path_text,
            path,
        })
    }

    /// The host pattern.
    pub fn host(&self) -> &Pattern {
        &self.host
    }

    /// Whether the path part is a glob (contains `*`) rather than a prefix.
    pub fn is_glob(&self) -> bool {
        matches!(self.path, PathPattern::Glob(_))
    }
}

impl fmt::Display for UrlPattern {
    /// `host-pattern/path`, normalised; parses back to the same rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.host, self.path_text)
    }
}

impl std::str::FromStr for UrlPattern {
    type Err = UrlRuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

// === impl PathPattern ===

impl PathPattern {
    fn matches(&self, path: &[u8]) -> bool {
        match self {
            Self::Prefix(prefix) => {
                path.starts_with(prefix)
                    && (path.len() == prefix.len()
                        || prefix.ends_with(b"/")
                        || path[prefix.len()] == b'/')
            }
            Self::Glob(pieces) => glob_matches(pieces, path),
        }
    }
}

/// Whether `path` is `pieces[0] * pieces[1] * … * pieces[n]` with `*` any run of bytes. Taking
/// the leftmost occurrence of each middle piece is enough: any later match leaves less room.
fn glob_matches(pieces: &[Vec<u8>], path: &[u8]) -> bool {
    let (Some((first, rest)), Some(last)) = (pieces.split_first(), pieces.last()) else {
        return false;
    };
    if rest.is_empty() {
        return path == first.as_slice();
    }
    if !path.starts_with(first) || path.len() < first.len() + last.len() || !path.ends_with(last) {
        return false;
    }
    let mut middle = &path[first.len()..path.len() - last.len()];
    for piece in &rest[..rest.len() - 1] {
        match memchr::memmem::find(middle, piece) {
            Some(at) => middle = &middle[at + piece.len()..],
            None => return false,
        }
    }
    true
}

// === path normalisation ===

/// Normalises a request path for matching: drops any query or fragment, decodes escaped
/// unreserved characters and upper-cases other escapes (RFC 3986 §6.2.2.1–6.2.2.2), collapses
/// `//` runs and resolves `.` and `..` segments (RFC 3986 §5.2.4). The result always starts
/// with `/`. Bytes, since an escape may stand for anything.
pub fn normalize_path(path: &str) -> Vec<u8> {
    normalize_path_bytes(strip_query(path).as_bytes())
}

fn strip_query(path: &str) -> &str {
    path.find(['?', '#']).map_or(path, |end| &path[..end])
}

fn normalize_path_bytes(path: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(path.len() + 1);
    if !path.starts_with(b"/") {
        decoded.push(b'/');
    }
    let mut i = 0;
    while i < path.len() {
        match escape_at(path, i) {
            Some(v) if is_unreserved(v) => decoded.push(v),
            Some(v) => decoded.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(v >> 4)],
                HEX_UPPER[usize::from(v & 15)],
            ]),
            None => {
                decoded.push(path[i]);
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    remove_dot_segments(&collapse_slashes(&decoded))
}

/// Decodes every `%XX` escape once (for the "as a lenient server would read it" variant).
fn percent_decode_all(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if let Some(v) = escape_at(path, i) {
            out.push(v);
            i += 3;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    out
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The byte of a valid `%XX` escape starting at `i`.
fn escape_at(path: &[u8], i: usize) -> Option<u8> {
    if path.get(i) != Some(&b'%') {
        return None;
    }
    let hi = hex_value(*path.get(i + 1)?)?;
    let lo = hex_value(*path.get(i + 2)?)?;
    Some(hi << 4 | lo)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn collapse_slashes(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if !(b == b'/' && out.last() == Some(&b'/')) {
            out.push(b);
        }
    }
    out
}

/// RFC 3986 §5.2.4 on an absolute path (it starts with `/`), segment by segment: `.` is
/// dropped, `..` drops the segment before it (never above the root), and a path ending in `.`
/// or `..` keeps its trailing `/` as the RFC's algorithm does.
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for segment in path[1..].split(|&b| b == b'/') {
        trailing_slash = false;
        match segment {
            b"." => trailing_slash = true,
            b".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing_slash || out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests;
