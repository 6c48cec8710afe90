//! `sluice policy test CASES.toml`: policy as code. Each case names a host (and optionally a
//! client address, user and SNI) and the expected decision — `decrypt`, `bypass`, `block`, or
//! with the reason, `bypass:global`. One line per case; exit status 1 on any mismatch, so a
//! CI job can guard a policy change.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use sluice_policy::engine::Query;
use sluice_policy::exceptions::Exceptions;
use sluice_policy::name::{DomainName, Host};

use crate::{load, Args, Failure};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    host: String,
    client: Option<IpAddr>,
    user: Option<String>,
    sni: Option<String>,
    expect: String,
}

pub(crate) fn run(args: &Args, file: &Path) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    let cases: Cases = toml::from_str(&text)
        .map_err(|e| Failure::usage(format!("{}: {}", file.display(), e.message())))?;
    let config = load::effective(args)?;
    let catalog = load::catalog(&config)?;
    let engine = load::engine(&config, &catalog)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut failed = 0;
    for (i, case) in cases.cases.iter().enumerate() {
        let host = Host::parse(&case.host)
            .map_err(|e| Failure::usage(format!("case {}: host `{}`: {e}", i + 1, case.host)))?;
        let sni = case
            .sni
            .as_deref()
            .map(DomainName::parse)
            .transpose()
            .map_err(|e| Failure::usage(format!("case {}: sni: {e}", i + 1)))?;
        let q = Query {
            client: case.client.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            user: case.user.as_deref(),
            host: Some(&host),
            sni: sni.as_ref(),
            ja4: None,
            now,
            explain: false,
        };
        let d = engine.decide(&q, &Exceptions::empty());
        let got = format!("{}:{}", d.action.as_str(), d.reason);
        let ok = if case.expect.contains(':') {
            got == case.expect
        } else {
            d.action.as_str() == case.expect
        };
        let who = match (&case.client, &case.user) {
            (None, None) => String::new(),
            (c, u) => format!(
                " [client {} user {}]",
                c.map_or("-".into(), |c| c.to_string()),
                u.as_deref().unwrap_or("-")
            ),
        };
        if ok {
            println!("ok    {host}{who} -> {got} (policy {})", d.policy);
        } else {
            failed += 1;
            println!(
                "FAIL  {host}{who} -> {got} (policy {}), expected {}",
                d.policy, case.expect
            );
        }
    }
    println!("{} passed, {} failed", cases.cases.len() - failed, failed);
    if failed > 0 {
        return Err(Failure::runtime(format!("{failed} policy case(s) failed")));
    }
    Ok(())
}
