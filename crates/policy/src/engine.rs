//! The compiled policy snapshot and `decide()`: the whole decision of DESIGN.md ("The
//! decision") as one pure function of (snapshot, query, exceptions).
//!
//! An [`Engine`] is built once per configuration (and per reload) from the typed config and the
//! catalog; it is immutable afterwards except for per-rule hit counters. The data path, `sluice
//! check` and the admin API all call the same [`Engine::decide`], so what the log says, what
//! `check` explains and what the gateway does cannot drift apart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::config::{Config, Entry, Origin, PinningMode, PolicyConfig};
use crate::domain::DomainSet;
use crate::name::DomainName;

mod build;
mod decide;
#[cfg(test)]
mod tests;

pub use build::EngineBuilder;
pub use decide::{Action, Decision, Query, Step};

/// Index of a rule in [`Engine::rules`].
pub type RuleId = u32;
type AppIdx = u32;

/// Where a rule came from and what it says, for the log, `sluice check` and hit counters.
#[derive(Clone, Debug, Serialize)]
pub struct Rule {
    /// The policy it belongs to (None for catalog rules).
    pub policy: Option<String>,
    /// The list: `bypass.domains`, `block.apps`, `catalog.global_bypass`, ...
    pub list: &'static str,
    /// The pattern, app id or category as written.
    pub value: String,
    /// `file:line` or the catalog source.
    pub origin: String,
    /// Owner, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Note, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Unix expiry, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

/// A catalog application as the engine needs it.
#[derive(Clone, Debug)]
pub struct AppInfo {
    /// Catalog id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Category (lowercase).
    pub category: String,
    /// On the global bypass list.
    pub global_bypass: bool,
}

/// One list of a compiled policy: domain patterns plus app and category memberships.
#[derive(Debug, Default)]
struct CompiledList {
    domains: DomainSet<RuleId>,
    apps: HashMap<String, RuleId>,
    categories: HashMap<String, RuleId>,
}

#[derive(Debug)]
struct CompiledPolicy {
    name: String,
    origin: Option<Origin>,
    networks: Vec<IpNet>,
    users: Vec<String>,
    decrypt: bool,
    global_bypass: bool,
    pinning: PinningMode,
    bypass: CompiledList,
    block: CompiledList,
}

/// The compiled, immutable decision snapshot.
#[derive(Debug)]
pub struct Engine {
    policies: Vec<CompiledPolicy>,
    fallback: usize,
    apps: Vec<AppInfo>,
    app_domains: DomainSet<(AppIdx, RuleId)>,
    categories: DomainSet<u32>,
    category_names: Vec<String>,
    rules: Vec<Rule>,
    hits: Vec<AtomicU64>,
}

impl Engine {
    /// Compiles a configuration and a catalog. Category lists are added with
    /// [`Engine::builder`]; this is the common case without them.
    pub fn new(config: &Config, catalog: &Catalog) -> Self {
        EngineBuilder::new(config, catalog).build()
    }

    /// A builder, to add category domain lists before compiling.
    pub fn builder<'a>(config: &'a Config, catalog: &'a Catalog) -> EngineBuilder<'a> {
        EngineBuilder::new(config, catalog)
    }

    /// All rules, indexed by [`RuleId`].
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Hits per rule since this engine was built.
    pub fn hits(&self) -> Vec<u64> {
        self.hits
            .iter()
            .map(|h| h.load(Ordering::Relaxed))
            .collect()
    }

    /// The catalog app a host belongs to, if any.
    pub fn app_of(&self, name: &DomainName) -> Option<&AppInfo> {
        self.app_domains
            .lookup(name)
            .map(|(_, (idx, _))| &self.apps[*idx as usize])
    }

    /// The category of a host: its catalog app's, else the category lists'.
    pub fn category_of(&self, name: &DomainName) -> Option<&str> {
        if let Some(app) = self.app_of(name) {
            return Some(&app.category);
        }
        self.categories
            .lookup(name)
            .map(|(_, c)| self.category_names[*c as usize].as_str())
    }

    /// Whether a category name (lowercase) is known: a catalog app's category or a list's.
    pub fn known_category(&self, category: &str) -> bool {
        self.apps.iter().any(|a| a.category == category)
            || self.category_names.iter().any(|c| c == category)
    }

    /// Names of the policies, in evaluation order (fallback last).
    pub fn policy_names(&self) -> Vec<&str> {
        self.policies.iter().map(|p| p.name.as_str()).collect()
    }

    /// The pinning mode of a policy by name.
    pub fn pinning_mode(&self, policy: &str) -> PinningMode {
        self.policies
            .iter()
            .find(|p| p.name == policy)
            .map_or(PinningMode::Report, |p| p.pinning)
    }

    fn hit(&self, rule: RuleId) {
        if let Some(h) = self.hits.get(rule as usize) {
            h.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn entry_rule<T>(policy: &PolicyConfig, list: &'static str, e: &Entry<T>) -> Rule {
    Rule {
        policy: Some(policy.name.clone()),
        list,
        value: e.text.clone(),
        origin: e.origin.to_string(),
        owner: e.owner.clone(),
        note: e.note.clone(),
        expires: e.expires,
    }
}

fn client_in(networks: &[IpNet], client: IpAddr) -> bool {
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    networks.is_empty() || networks.iter().any(|n| n.contains(&client))
}
