//! The application catalog: which applications pin their certificates, and which domain patterns
//! their traffic uses, so a policy can bypass decryption by application name (`dropbox`) or by
//! category, and the built-in "global bypass" rows can be honoured.
//!
//! The built-in catalog is `catalog/apps.toml`, embedded at build time ([`Catalog::builtin`]).
//! Administrators add or replace applications with their own files (`[catalog] extra`), parsed by
//! [`Catalog::parse`] and combined with [`Catalog::merge`]. Every app and every pattern keeps the
//! file and line it came from, so a bypass can always be traced back to the row that granted it.
//!
//! This module only reads and checks the data. It does not compile patterns into a matcher nor
//! resolve host names (see [`crate::domain`]); it rejects only patterns that are obviously
//! malformed (whitespace, URLs, a `*` anywhere but a leading `*.`). It performs no I/O: callers
//! read extra files and hand over their text.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The built-in catalog text, embedded so that sluice works with no files at all.
const BUILTIN_TEXT: &str = include_str!("../../../catalog/apps.toml");

/// The `file` recorded in [`AppOrigin`] for apps of the built-in catalog.
pub const BUILTIN_FILE: &str = "builtin:catalog/apps.toml";

/// Where an app definition came from, so that every exception can be traced to its row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppOrigin {
    /// [`BUILTIN_FILE`] for the embedded catalog, otherwise the path the caller passed to
    /// [`Catalog::parse`].
    pub file: String,
    /// 1-based line of the app's `[[app]]` header.
    pub line: usize,
}

/// One application of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    /// Stable identifier, lowercase `[a-z0-9-]+` (`zoom-meetings`); what policies name.
    pub id: String,
    /// Display name (`Zoom Meetings`).
    pub name: String,
    /// Vendor; empty when the file does not say.
    pub vendor: String,
    /// Category name (`Collaboration`); policies compare categories case-insensitively.
    pub category: String,
    /// Bypassed for every policy that keeps `global_bypass = true` (the seed's "Bypassed
    /// Globally" rows). Default `false`.
    pub global_bypass: bool,
    /// The application is known to pin its certificates. Default `false`.
    pub pinning: bool,
    /// App-level domain patterns, as written. See [`App::all_domains`] for these plus the
    /// services' patterns.
    pub domains: Vec<DomainEntry>,
    /// Sub-services with their own patterns (the four "Services" rows of the seed).
    pub services: Vec<Service>,
    /// Where the domain data comes from: URLs, or "common knowledge".
    pub sources: Vec<String>,
    /// Date (`YYYY-MM-DD`) the domain data was compiled or last checked.
    pub verified: Option<String>,
    /// Caveats for administrators (shown by `sluice apps show`).
    pub notes: Option<String>,
    /// File and line of the `[[app]]` table.
    pub origin: AppOrigin,
}

/// A domain pattern as written in a catalog file, with its line.
///
/// `example.com` means that host only; `*.example.com` means the domain and every subdomain.
/// Patterns are compiled and fully validated by the domain matcher, not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainEntry {
    /// The pattern string exactly as written.
    pub pattern: String,
    /// 1-based line of the pattern in its file.
    pub line: usize,
}

/// A named part of an application (`Apple Push Notification service (APNs)`), written as an
/// `[[app.service]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Display name of the service.
    pub name: String,
    /// The service's domain patterns; may be empty when its hosts are customer-specific.
    pub domains: Vec<DomainEntry>,
    /// Where this service's domain data comes from.
    pub sources: Vec<String>,
}

/// The application catalog: built-in apps plus any extra files, ordered by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Sorted by `id`, ids unique: lookups binary-search.
    apps: Vec<App>,
}

/// Why a catalog file was rejected. `Display` is `file:line: key: message` (`file:line: message`
/// for TOML errors); `line` is 1-based, or 0 when the TOML parser could not locate the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The text is not TOML, or does not have the catalog's shape (unknown or missing key, wrong
    /// type). The message names the offending key.
    #[error("{file}:{line}: {message}")]
    Toml {
        /// File name as given to [`Catalog::parse`].
        file: String,
        /// 1-based line, 0 if unknown.
        line: usize,
        /// The parser's message, without the echoed source text.
        message: String,
    },
    /// The TOML is well-formed but a value breaks a catalog rule (bad id, duplicate id, empty
    /// name, no domains, malformed pattern).
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        /// File name as given to [`Catalog::parse`].
        file: String,
        /// 1-based line of the offending value.
        line: usize,
        /// Key path, e.g. `app[3].id` or `app[0].service[1].domains[2]` (indices 0-based).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The file's shape, as serde sees it. Raw types keep spans; [`App`] is built from them only
/// after validation ("parse, don't validate").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    app: Vec<Spanned<RawApp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    id: Spanned<String>,
    name: Spanned<String>,
    #[serde(default)]
    vendor: String,
    category: Spanned<String>,
    #[serde(default)]
    global_bypass: bool,
    #[serde(default)]
    pinning: bool,
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    #[serde(default, rename = "service")]
    services: Vec<Spanned<RawService>>,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    verified: Option<Spanned<String>>,
    #[serde(default)]
    notes: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    #[serde(default)]
    sources: Vec<String>,
}

/// Byte offset → 1-based line, for turning serde spans into `file:line`.
struct LineIndex {
    /// Byte offsets of every `\n` in the text.
    newlines: Vec<usize>,
}

/// Collects validation errors so that one run reports all of them, not just the first.
struct Checker<'a> {
    file: &'a str,
    lines: LineIndex,
    errors: Vec<CatalogError>,
}

// === impl Catalog ===

impl Catalog {
    /// The embedded catalog (`catalog/apps.toml`). Fails only if that file is broken, which the
    /// crate's tests rule out; callers still get an error rather than a panic.
    pub fn builtin() -> Result<Self, CatalogError> {
        Self::parse(BUILTIN_TEXT, BUILTIN_FILE).map(Self::from_apps)
    }

    /// The text of the embedded catalog, for `sluice apps` and for documentation.
    pub fn builtin_text() -> &'static str {
        BUILTIN_TEXT
    }

    /// A catalog of exactly these apps. When ids repeat, the later app wins (as in
    /// [`Catalog::merge`]).
    pub fn from_apps(apps: Vec<App>) -> Self {
        let mut catalog = Self::default();
        catalog.merge(apps);
        catalog
    }

    /// Parses one catalog file (`[[app]]` tables) and checks it. `file` is what errors and
    /// [`AppOrigin::file`] name. Apps are returned in file order. On failure, returns the first
    /// error in file order; [`Catalog::check`] lists them all.
    pub fn parse(text: &str, file: &str) -> Result<Vec<App>, CatalogError> {
        // `parse_file` never returns an empty error list, so index 0 exists.
        parse_file(text, file).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Every error in one catalog file (empty if it parses), for `sluice config check`.
    /// A TOML error hides the validation errors behind it, since nothing past it can be read.
    pub fn check(text: &str, file: &str) -> Vec<CatalogError> {
        parse_file(text, file).err().unwrap_or_default()
    }

    /// Adds `extra` apps to the catalog. An app whose id is already present **replaces** that app
    /// entirely (domains, services, flags, origin): definitions are never merged field by field,
    /// so what an app covers is always readable from a single `[[app]]` table. New ids are added.
    /// Within `extra`, a later app wins over an earlier one with the same id.
    pub fn merge(&mut self, extra: Vec<App>) {
        for app in extra {
            match self.apps.binary_search_by(|a| a.id.as_str().cmp(&app.id)) {
                Ok(i) => self.apps[i] = app,
                Err(i) => self.apps.insert(i, app),
            }
        }
    }

    /// The app with this id; ids compare case-insensitively (`Dropbox` finds `dropbox`).
    pub fn get(&self, id: &str) -> Option<&App> {
        let id = id.to_ascii_lowercase();
        self.apps
            .binary_search_by(|a| a.id.as_str().cmp(&id))
            .ok()
            .map(|i| &self.apps[i])
    }

    /// All apps, ordered by id.
    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    /// Distinct category names, sorted case-insensitively. Categories that differ only in case
    /// count once (the first spelling in id order is kept), because policies compare them
    /// case-insensitively.
    pub fn categories(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        let mut out: Vec<&str> = self
            .apps
            .iter()
            .map(|a| a.category.as_str())
            .filter(|c| seen.insert(c.to_ascii_lowercase()))
            .collect();
        out.sort_by_key(|c| c.to_ascii_lowercase());
        out
    }
}

// === impl App ===

impl App {
    /// The app-level patterns followed by every service's patterns, each pattern once
    /// (compared ASCII case-insensitively; the first occurrence, with its line, is kept).
    pub fn all_domains(&self) -> impl Iterator<Item = &DomainEntry> {
        let mut seen = HashSet::new();
        self.domains
            .iter()
            .chain(self.services.iter().flat_map(|s| s.domains.iter()))
            .filter(move |d| seen.insert(d.pattern.to_ascii_lowercase()))
    }
}

// === impl LineIndex ===

impl LineIndex {
    fn new(text: &str) -> Self {
        let newlines = text
            .bytes()
            .enumerate()
            .filter_map(|(i, b)| (b == b'\n').then_some(i))
            .collect();
        Self { newlines }
    }

    /// 1-based line containing byte `offset`.
    fn line(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }

    fn line_of(&self, span: Range<usize>) -> usize {
        self.line(span.start)
    }
}

// === impl Checker ===

impl Checker<'_> {
    fn invalid(&mut self, line: usize, key: String, message: String) {
        self.errors.push(CatalogError::Invalid {
            file: self.file.to_owned(),
            line,
            key,
            message,
        });
    }

    /// A required text value that must not be blank.
    fn non_empty(&mut self, value: &Spanned<String>, key: String) -> String {
        let text = value.get_ref();
        if text.trim().is_empty() {
            self.invalid(
                self.lines.line_of(value.span()),
                key,
                "must not be empty".into(),
            );
        }
        text.clone()
    }

    fn id(&mut self, value: &Spanned<String>, key: String) -> String {
        let id = value.get_ref();
        let valid = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            let message = format!("invalid id `{id}`: use lowercase letters, digits and `-`");
            self.invalid(self.lines.line_of(value.span()), key, message);
        }
        id.clone()
    }

    fn verified(&mut self, value: &Spanned<String>, key: String) -> String {
        let date = value.get_ref();
        if !is_iso_date(date) {
            let message = format!("invalid date `{date}`: expected YYYY-MM-DD");
            self.invalid(self.lines.line_of(value.span()), key, message);
        }
        date.clone()
    }

    fn domains(&mut self, raw: &[Spanned<String>], key: &str) -> Vec<DomainEntry> {
        raw.iter()
            .enumerate()
            .map(|(i, pattern)| {
                let line = self.lines.line_of(pattern.span());
                if let Err(message) = check_pattern(pattern.get_ref()) {
                    self.invalid(line, format!("{key}[{i}]"), message);
                }
                DomainEntry {
                    pattern: pattern.get_ref().clone(),
                    line,
                }
            })
            .collect()
    }

    fn service(&mut self, raw: &Spanned<RawService>, key: &str) -> Service {
        let s = raw.get_ref();
        Service {
            name: self.non_empty(&s.name, format!("{key}.name")),
            domains: self.domains(&s.domains, &format!("{key}.domains")),
            sources: s.sources.clone(),
        }
    }

    fn app(&mut self, raw: &Spanned<RawApp>, index: usize) -> App {
        let key = format!("app[{index}]");
        let line = self.lines.line_of(raw.span());
        let a = raw.get_ref();
        let app = App {
            id: self.id(&a.id, format!("{key}.id")),
            name: self.non_empty(&a.name, format!("{key}.name")),
            vendor: a.vendor.clone(),
            category: self.non_empty(&a.category, format!("{key}.category")),
            global_bypass: a.global_bypass,
            pinning: a.pinning,
            domains: self.domains(&a.domains, &format!("{key}.domains")),
            services: (a.services.iter().enumerate())
                .map(|(i, s)| self.service(s, &format!("{key}.service[{i}]")))
                .collect(),
            sources: a.sources.clone(),
            verified: (a.verified.as_ref()).map(|v| self.verified(v, format!("{key}.verified"))),
            notes: a.notes.clone(),
            origin: AppOrigin {
                file: self.file.to_owned(),
                line,
            },
        };
        if app.all_domains().next().is_none() {
            // An app without patterns can never match: a mistake (a misplaced list, a forgotten
            // service), not a harmless no-op.
            let message = "no domain patterns: give `domains` or an [[app.service]] with domains";
            self.invalid(line, key, message.into());
        }
        app
    }
}

// === parsing ===

/// Parses and validates; `Err` holds at least one error, in file order.
fn parse_file(text: &str, file: &str) -> Result<Vec<App>, Vec<CatalogError>> {
    let lines = LineIndex::new(text);
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        vec![CatalogError::Toml {
            file: file.to_owned(),
            line: e.span().map_or(0, |s| lines.line_of(s)),
            // `message()` rather than `Display`: Display echoes the offending source line, and
            // errors must not copy file contents around (STYLE.md, Configuration).
            message: e.message().to_owned(),
        }]
    })?;
    let mut checker = Checker {
        file,
        lines,
        errors: Vec::new(),
    };
    let apps: Vec<App> = (raw.app.iter().enumerate())
        .map(|(i, a)| checker.app(a, i))
        .collect();
    check_unique_ids(&mut checker, &raw.app);
    if checker.errors.is_empty() {
        Ok(apps)
    } else {
        checker.errors.sort_by_key(|e| match e {
            CatalogError::Invalid { line, .. } | CatalogError::Toml { line, .. } => *line,
        });
        Err(checker.errors)
    }
}

/// Ids must be unique within one file: a second definition would silently shadow the first.
/// (Across files, a repeated id is the documented way to override, see [`Catalog::merge`].)
fn check_unique_ids(checker: &mut Checker<'_>, apps: &[Spanned<RawApp>]) {
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    for (i, app) in apps.iter().enumerate() {
        let id = app.get_ref().id.get_ref().as_str();
        let line = checker.lines.line_of(app.get_ref().id.span());
        if let Some(first) = first_line.get(id) {
            let message = format!("duplicate id `{id}` (first defined at line {first})");
            checker.invalid(line, format!("app[{i}].id"), message);
        } else {
            first_line.insert(id, line);
        }
    }
}

/// Rejects patterns that cannot be a host name or `*.domain`, whatever the matcher's finer rules.
fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("empty domain pattern".into());
    }
    if pattern.chars().any(char::is_whitespace) {
        return Err(format!("domain pattern `{pattern}` contains whitespace"));
    }
    if pattern.contains('/') || pattern.contains(':') {
        return Err(format!(
            "domain pattern `{pattern}` looks like a URL or has a port: give a host name \
             (`example.com`) or `*.example.com`"
        ));
    }
    let rest = pattern.strip_prefix("*.").unwrap_or(pattern);
    if rest.contains('*') {
        return Err(format!(
            "domain pattern `{pattern}`: `*` is only allowed as a leading `*.` \
             (the domain and all its subdomains)"
        ));
    }
    if rest.is_empty() {
        return Err(format!(
            "domain pattern `{pattern}` has no domain after `*.`"
        ));
    }
    Ok(())
}

/// `YYYY-MM-DD` by shape only; the catalog never computes with the date.
fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests;
