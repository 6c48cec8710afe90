//! `decide()`: the decision order of DESIGN.md, first match wins, each outcome carrying its
//! reason and rule. Two names (SNI and CONNECT host) that differ are decided separately and
//! combined so that an exemption can never become a tunnel to somewhere else: block if either
//! is blocked, bypass only if both would be bypassed, else decrypt with `sni_mismatch`.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::{client_in, CompiledList, CompiledPolicy, Engine, RuleId};
use crate::exceptions::Exceptions;
use crate::name::{DomainName, Host};

/// What to do with a connection or request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Refuse it.
    Block,
    /// Relay it untouched (no decryption, no inspection).
    Bypass,
    /// Decrypt and inspect it.
    Decrypt,
}

impl Action {
    /// The log/metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Bypass => "bypass",
            Self::Decrypt => "decrypt",
        }
    }
}

/// What the decision is asked about.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// Client address.
    pub client: IpAddr,
    /// Authenticated proxy user.
    pub user: Option<&'a str>,
    /// CONNECT host or the plain-HTTP request's host.
    pub host: Option<&'a Host>,
    /// SNI from the ClientHello (normalised).
    pub sni: Option<&'a DomainName>,
    /// Client TLS fingerprint.
    pub ja4: Option<&'a str>,
    /// Unix time now (exception expiry).
    pub now: i64,
    /// Record a trace of every step (for `sluice check`); off on the data path.
    pub explain: bool,
}

/// One step of the decision order, for explanations.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The step: `policy`, `block`, `bypass: global`, ...
    pub step: String,
    /// Whether it decided.
    pub matched: bool,
    /// What was checked, what matched.
    pub detail: String,
}

/// The outcome, with everything the log, metrics and `sluice check` report.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Machine-readable reason: `global`, `policy`, `learned`, `approved`, `policy-off`,
    /// `default`, `sni_mismatch`, `blocked:domain`, `blocked:app`, `blocked:category`.
    pub reason: &'static str,
    /// The policy that applied.
    pub policy: Arc<str>,
    /// Catalog app of the (SNI, else CONNECT) host.
    pub app: Option<String>,
    /// Category of the host.
    pub category: Option<String>,
    /// The rule that decided, if any.
    #[serde(skip)]
    pub rule: Option<RuleId>,
    /// Observations behind a learned/approved bypass.
    pub evidence: Option<u32>,
    /// SNI and CONNECT host differed.
    pub sni_mismatch: bool,
    /// Steps, when `explain` was asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<Step>,
}

struct Outcome {
    action: Action,
    reason: &'static str,
    rule: Option<RuleId>,
    evidence: Option<u32>,
}

impl Engine {
    /// Decides. Pure apart from incrementing the winning rule's hit counter.
    pub fn decide(&self, q: &Query<'_>, ex: &Exceptions) -> Decision {
        let mut trace = Vec::new();
        let policy = self.select(q, &mut trace);
        let connect = q.host;
        let sni_host = q.sni.map(|d| Host::Domain(d.clone()));
        let primary = sni_host.as_ref().or(connect);
        let named = primary.and_then(Host::as_domain);
        let app = named.and_then(|d| self.app_of(d)).map(|a| a.id.clone());
        let category = named.and_then(|d| self.category_of(d)).map(str::to_string);
        let mismatch = matches!((&sni_host, connect), (Some(s), Some(c)) if s != c);
        let outcome = match (sni_host.as_ref(), connect) {
            (Some(s), Some(c)) if mismatch => {
                let a = self.decide_host(policy, s, q, ex, &mut trace, "sni");
                let b = self.decide_host(policy, c, q, ex, &mut trace, "connect");
                combine(a, b, &mut trace, q.explain)
            }
            (Some(s), _) => self.decide_host(policy, s, q, ex, &mut trace, "sni"),
            (None, Some(c)) => self.decide_host(policy, c, q, ex, &mut trace, "host"),
            (None, None) => self.fallthrough(policy, &mut trace, q.explain),
        };
        // Explanations (`sluice check`, the admin policy tester) are not traffic: no hit.
        if let (Some(rule), false) = (outcome.rule, q.explain) {
            self.hit(rule);
        }
        Decision {
            action: outcome.action,
            reason: outcome.reason,
            policy: Arc::from(policy.name.as_str()),
            app,
            category,
            rule: outcome.rule,
            evidence: outcome.evidence,
            sni_mismatch: mismatch,
            trace,
        }
    }

    /// First policy whose match fits the identity, else the fallback (`default`).
    fn select(&self, q: &Query<'_>, trace: &mut Vec<Step>) -> &CompiledPolicy {
        for p in &self.policies[..self.fallback] {
            let net = client_in(&p.networks, q.client);
            let user = p.users.is_empty() || q.user.is_some_and(|u| p.users.iter().any(|x| x == u));
            if q.explain {
                trace.push(Step {
                    step: "policy".into(),
                    matched: net && user,
                    detail: format!(
                        "`{}`: client {} {}, user {}",
                        p.name,
                        q.client,
                        fits(net),
                        fits(user)
                    ),
                });
            }
            if net && user {
                return p;
            }
        }
        let p = &self.policies[self.fallback];
        if q.explain {
            let origin = p
                .origin
                .as_ref()
                .map_or_else(|| "implicit".into(), ToString::to_string);
            trace.push(Step {
                step: "policy".into(),
                matched: true,
                detail: format!("`{}` (fallback, {origin})", p.name),
            });
        }
        p
    }

    fn decide_host(
        &self,
        p: &CompiledPolicy,
        host: &Host,
        q: &Query<'_>,
        ex: &Exceptions,
        trace: &mut Vec<Step>,
        which: &str,
    ) -> Outcome {
        let explain = q.explain;
        let Some(name) = host.as_domain() else {
            note(
                trace,
                explain,
                "names",
                false,
                format!("{which} {host}: an IP literal matches no domain rule"),
            );
            return self.fallthrough(p, trace, explain);
        };
        let app = self.app_of(name);
        let category = self.category_of(name);
        note(
            trace,
            explain,
            "names",
            true,
            format!(
                "{which} {name}: app {}, category {}",
                app.map_or("-", |a| a.id.as_str()),
                category.unwrap_or("-")
            ),
        );
        if let Some((reason, rule)) =
            self.list_match(&p.block, name, app.map(|a| a.id.as_str()), category, q.now)
        {
            note(trace, explain, "block", true, self.describe(rule));
            return Outcome {
                action: Action::Block,
                reason,
                rule: Some(rule),
                evidence: None,
            };
        }
        note(
            trace,
            explain,
            "block",
            false,
            "no block rule matches".into(),
        );
        if p.global_bypass {
            if let Some((_, (idx, rule))) = self.app_domains.lookup(name) {
                if self.apps[*idx as usize].global_bypass {
                    note(trace, explain, "bypass: global", true, self.describe(*rule));
                    return Outcome {
                        action: Action::Bypass,
                        reason: "global",
                        rule: Some(*rule),
                        evidence: None,
                    };
                }
            }
            note(
                trace,
                explain,
                "bypass: global",
                false,
                "not on the global bypass list".into(),
            );
        } else {
            note(
                trace,
                explain,
                "bypass: global",
                false,
                "policy sets global_bypass = false".into(),
            );
        }
        if let Some((_, rule)) =
            self.list_match(&p.bypass, name, app.map(|a| a.id.as_str()), category, q.now)
        {
            note(trace, explain, "bypass: policy", true, self.describe(rule));
            return Outcome {
                action: Action::Bypass,
                reason: "policy",
                rule: Some(rule),
                evidence: None,
            };
        }
        note(
            trace,
            explain,
            "bypass: policy",
            false,
            "no bypass rule matches".into(),
        );
        if let Some(g) = ex.approved(name, q.ja4, q.now) {
            note(
                trace,
                explain,
                "bypass: approved",
                true,
                format!("approved pinning exception ({} observations)", g.evidence),
            );
            return Outcome {
                action: Action::Bypass,
                reason: "approved",
                rule: None,
                evidence: Some(g.evidence),
            };
        }
        if p.pinning == crate::config::PinningMode::Learn {
            if let Some(g) = ex.learned(name, q.ja4, q.now) {
                note(
                    trace,
                    explain,
                    "bypass: learned",
                    true,
                    format!("learned bypass ({} observations)", g.evidence),
                );
                return Outcome {
                    action: Action::Bypass,
                    reason: "learned",
                    rule: None,
                    evidence: Some(g.evidence),
                };
            }
        }
        note(
            trace,
            explain,
            "bypass: learned/approved",
            false,
            "no pinning exception in force".into(),
        );
        self.fallthrough(p, trace, explain)
    }

    fn fallthrough(&self, p: &CompiledPolicy, trace: &mut Vec<Step>, explain: bool) -> Outcome {
        if p.decrypt {
            note(
                trace,
                explain,
                "decrypt",
                true,
                format!("policy `{}` decrypts", p.name),
            );
            Outcome {
                action: Action::Decrypt,
                reason: "default",
                rule: None,
                evidence: None,
            }
        } else {
            note(
                trace,
                explain,
                "decrypt",
                true,
                format!("policy `{}` sets decrypt = false", p.name),
            );
            Outcome {
                action: Action::Bypass,
                reason: "policy-off",
                rule: None,
                evidence: None,
            }
        }
    }

    /// The first rule of a list matching the name: domains, then apps, then categories.
    fn list_match(
        &self,
        list: &CompiledList,
        name: &DomainName,
        app: Option<&str>,
        category: Option<&str>,
        now: i64,
    ) -> Option<(&'static str, RuleId)> {
        let live = |r: &RuleId| self.rules[*r as usize].expires.is_none_or(|e| e > now);
        if let Some((_, r)) = list.domains.lookup(name).filter(|(_, r)| live(r)) {
            return Some(("blocked:domain", *r));
        }
        if let Some(r) = app.and_then(|a| list.apps.get(a)).filter(|r| live(r)) {
            return Some(("blocked:app", *r));
        }
        if let Some(r) = category
            .and_then(|c| list.categories.get(c))
            .filter(|r| live(r))
        {
            return Some(("blocked:category", *r));
        }
        None
    }

    /// `list value (origin)` for a rule.
    pub fn describe(&self, rule: RuleId) -> String {
        match self.rules.get(rule as usize) {
            Some(r) => {
                let policy = r
                    .policy
                    .as_deref()
                    .map(|p| format!("policy `{p}` "))
                    .unwrap_or_default();
                format!("{policy}{} `{}` ({})", r.list, r.value, r.origin)
            }
            None => String::new(),
        }
    }
}

fn combine(sni: Outcome, connect: Outcome, trace: &mut Vec<Step>, explain: bool) -> Outcome {
    let out = match (sni.action, connect.action) {
        (Action::Block, _) => sni,
        (_, Action::Block) => connect,
        (Action::Bypass, Action::Bypass) => sni,
        (Action::Decrypt, Action::Decrypt) => sni,
        _ => Outcome {
            action: Action::Decrypt,
            reason: "sni_mismatch",
            rule: None,
            evidence: None,
        },
    };
    note(
        trace,
        explain,
        "sni/connect",
        true,
        format!(
            "names differ: {} wins ({})",
            out.action.as_str(),
            out.reason
        ),
    );
    out
}

fn note(trace: &mut Vec<Step>, explain: bool, step: &str, matched: bool, detail: String) {
    if explain {
        trace.push(Step {
            step: step.into(),
            matched,
            detail,
        });
    }
}

fn fits(ok: bool) -> &'static str {
    if ok {
        "fits"
    } else {
        "does not fit"
    }
}
