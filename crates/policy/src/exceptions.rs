//! Pinning exceptions in force: bypasses approved by an administrator and bypasses learned
//! from pinning suspects. The store owns them durably; the gateway compiles a snapshot of them
//! into this value and swaps it in when the store changes. Lookups are exact host matches,
//! optionally scoped to one client TLS fingerprint (JA4).

use std::collections::HashMap;

use crate::name::DomainName;

/// One exception for a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Only clients with this JA4 fingerprint; `None` = every client.
    pub ja4: Option<String>,
    /// Unix time it ends (learned bypasses); `None` = permanent.
    pub expires: Option<i64>,
    /// Observations behind it.
    pub evidence: u32,
}

/// The exceptions in force.
#[derive(Clone, Debug, Default)]
pub struct Exceptions {
    approved: HashMap<DomainName, Vec<Grant>>,
    learned: HashMap<DomainName, Vec<Grant>>,
}

impl Exceptions {
    /// No exceptions.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds an approved exception.
    pub fn approve(&mut self, host: DomainName, grant: Grant) {
        self.approved.entry(host).or_default().push(grant);
    }

    /// Adds a learned bypass.
    pub fn learn(&mut self, host: DomainName, grant: Grant) {
        self.learned.entry(host).or_default().push(grant);
    }

    /// The approved exception covering this host and fingerprint.
    pub fn approved(&self, host: &DomainName, ja4: Option<&str>, now: i64) -> Option<&Grant> {
        find(self.approved.get(host)?, ja4, now)
    }

    /// The learned bypass covering this host and fingerprint.
    pub fn learned(&self, host: &DomainName, ja4: Option<&str>, now: i64) -> Option<&Grant> {
        find(self.learned.get(host)?, ja4, now)
    }

    /// Whether there are no exceptions at all.
    pub fn is_empty(&self) -> bool {
        self.approved.is_empty() && self.learned.is_empty()
    }
}

fn find<'a>(grants: &'a [Grant], ja4: Option<&str>, now: i64) -> Option<&'a Grant> {
    grants.iter().find(|g| {
        let live = g.expires.is_none_or(|e| e > now);
        let scoped = match (&g.ja4, ja4) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => false,
        };
        live && scoped
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_scope_and_expiry() {
        let host = DomainName::parse("pinned.example").unwrap();
        let mut ex = Exceptions::empty();
        ex.learn(
            host.clone(),
            Grant {
                ja4: Some("t13d_a".into()),
                expires: Some(100),
                evidence: 3,
            },
        );
        assert!(ex.learned(&host, Some("t13d_a"), 50).is_some());
        assert!(ex.learned(&host, Some("t13d_b"), 50).is_none());
        assert!(ex.learned(&host, None, 50).is_none());
        assert!(ex.learned(&host, Some("t13d_a"), 100).is_none());
        ex.approve(
            host.clone(),
            Grant {
                ja4: None,
                expires: None,
                evidence: 3,
            },
        );
        assert!(ex.approved(&host, Some("anything"), 1_000_000).is_some());
    }
}
