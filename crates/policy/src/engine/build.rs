//! Compiling a configuration and catalog into an [`Engine`].

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use super::{entry_rule, AppInfo, CompiledList, CompiledPolicy, Engine, Rule, RuleId};
use crate::catalog::Catalog;
use crate::config::{Config, PinningMode, PolicyConfig, RuleLists};
use crate::domain::{DomainSetBuilder, Pattern};

/// Builds an [`Engine`]; category lists are added before [`EngineBuilder::build`].
pub struct EngineBuilder<'a> {
    config: &'a Config,
    catalog: &'a Catalog,
    categories: DomainSetBuilder<u32>,
    category_names: Vec<String>,
}

impl<'a> EngineBuilder<'a> {
    pub(super) fn new(config: &'a Config, catalog: &'a Catalog) -> Self {
        Self {
            config,
            catalog,
            categories: DomainSetBuilder::new(),
            category_names: vec![],
        }
    }

    /// Adds a category's domain list (squidGuard/UT1 `domains` file: one domain per line,
    /// meaning the domain and its subdomains; `#` comments and blank lines ignored). Returns
    /// how many entries were added, and how many lines could not be parsed.
    pub fn add_category_list(&mut self, category: &str, text: &str) -> (usize, usize) {
        let category = category.to_ascii_lowercase();
        let idx = match self.category_names.iter().position(|c| *c == category) {
            Some(i) => i,
            None => {
                self.category_names.push(category);
                self.category_names.len() - 1
            }
        };
        let idx = u32::try_from(idx).unwrap_or(u32::MAX);
        let (mut added, mut bad) = (0, 0);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match self.categories.insert_lenient(line, idx) {
                Ok(_) => added += 1,
                Err(_) => bad += 1,
            }
        }
        (added, bad)
    }

    /// Compiles everything.
    pub fn build(self) -> Engine {
        let mut rules = Vec::new();
        let (apps, app_domains) = compile_catalog(self.catalog, &mut rules);
        let mode = self.config.pinning.mode;
        let mut policies: Vec<CompiledPolicy> = self
            .config
            .policies
            .iter()
            .filter(|p| p.name != "default")
            .map(|p| compile_policy(p, mode, &mut rules))
            .collect();
        let fallback = match self.config.default_policy() {
            Some(p) => compile_policy(p, mode, &mut rules),
            None => implicit_default(mode),
        };
        policies.push(fallback);
        let hits = rules.iter().map(|_| AtomicU64::new(0)).collect();
        Engine {
            fallback: policies.len() - 1,
            policies,
            apps,
            app_domains,
            categories: self.categories.build(),
            category_names: self.category_names,
            rules,
            hits,
        }
    }
}

type AppDomains = crate::domain::DomainSet<(u32, RuleId)>;

fn compile_catalog(catalog: &Catalog, rules: &mut Vec<Rule>) -> (Vec<AppInfo>, AppDomains) {
    let mut apps = Vec::new();
    let mut domains = DomainSetBuilder::new();
    for (idx, app) in catalog.apps().iter().enumerate() {
        let idx = u32::try_from(idx).unwrap_or(u32::MAX);
        apps.push(AppInfo {
            id: app.id.clone(),
            name: app.name.clone(),
            category: app.category.to_ascii_lowercase(),
            global_bypass: app.global_bypass,
        });
        let list = if app.global_bypass {
            "catalog.global_bypass"
        } else {
            "catalog.app"
        };
        for d in app.all_domains() {
            // Invalid catalog patterns are reported when the catalog is loaded; skip here.
            let Ok(pattern) = Pattern::parse(&d.pattern) else {
                continue;
            };
            let rule = push_rule(
                rules,
                Rule {
                    policy: None,
                    list,
                    value: format!("{} {}", app.id, d.pattern),
                    origin: format!("{}:{}", app.origin.file, d.line),
                    owner: None,
                    note: None,
                    expires: None,
                },
            );
            domains.insert(pattern, (idx, rule));
        }
    }
    (apps, domains.build())
}

fn compile_policy(p: &PolicyConfig, mode: PinningMode, rules: &mut Vec<Rule>) -> CompiledPolicy {
    CompiledPolicy {
        name: p.name.clone(),
        origin: Some(p.origin.clone()),
        networks: p.networks.clone(),
        users: p.users.clone(),
        decrypt: p.decrypt,
        global_bypass: p.global_bypass,
        pinning: p.pinning.unwrap_or(mode),
        bypass: compile_lists(p, &p.bypass, LIST_NAMES[0], rules),
        block: compile_lists(p, &p.block, LIST_NAMES[1], rules),
    }
}

const LIST_NAMES: [[&str; 3]; 2] = [
    ["bypass.domains", "bypass.apps", "bypass.categories"],
    ["block.domains", "block.apps", "block.categories"],
];

fn compile_lists(
    p: &PolicyConfig,
    lists: &RuleLists,
    names: [&'static str; 3],
    rules: &mut Vec<Rule>,
) -> CompiledList {
    let mut domains = DomainSetBuilder::new();
    for e in &lists.domains {
        let rule = push_rule(rules, entry_rule(p, names[0], e));
        domains.insert(e.value.clone(), rule);
    }
    let mut apps = HashMap::new();
    for e in &lists.apps {
        let rule = push_rule(rules, entry_rule(p, names[1], e));
        apps.entry(e.value.clone()).or_insert(rule);
    }
    let mut categories = HashMap::new();
    for e in &lists.categories {
        let rule = push_rule(rules, entry_rule(p, names[2], e));
        categories.entry(e.value.clone()).or_insert(rule);
    }
    CompiledList {
        domains: domains.build(),
        apps,
        categories,
    }
}

fn implicit_default(mode: PinningMode) -> CompiledPolicy {
    CompiledPolicy {
        name: "default".into(),
        origin: None,
        networks: vec![],
        users: vec![],
        decrypt: true,
        global_bypass: true,
        pinning: mode,
        bypass: CompiledList::default(),
        block: CompiledList::default(),
    }
}

fn push_rule(rules: &mut Vec<Rule>, rule: Rule) -> RuleId {
    rules.push(rule);
    RuleId::try_from(rules.len() - 1).unwrap_or(RuleId::MAX)
}
