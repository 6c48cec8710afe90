use std::path::Path;

use super::*;
use crate::exceptions::{Exceptions, Grant};
use crate::name::Host;

fn engine(text: &str) -> Engine {
    let config = Config::from_toml(text, "t.toml", Path::new("/")).unwrap();
    Engine::new(&config, &Catalog::builtin().unwrap())
}

fn ask(e: &Engine, client: &str, user: Option<&str>, host: &str, sni: Option<&str>) -> Decision {
    let host = Host::parse(host).unwrap();
    let sni = sni.map(|s| DomainName::parse(s).unwrap());
    let q = Query {
        client: client.parse().unwrap(),
        user,
        host: Some(&host),
        sni: sni.as_ref(),
        ja4: Some("t13d1516h2_aaa_bbb"),
        now: 1_000,
        explain: true,
    };
    e.decide(&q, &Exceptions::empty())
}

const POLICIES: &str = r#"
[[policy]]
name = "default"
bypass = { domains = ["*.bank.example"], apps = ["dropbox"] }
block = { domains = ["blocked.example"], apps = ["tiktok"] }

[[policy]]
name = "finance"
match = { networks = ["10.1.0.0/16"], users = ["alice"] }
decrypt = false
"#;

#[test]
fn decision_order_first_match_wins() {
    let e = engine(POLICIES);
    let d = ask(&e, "192.0.2.1", None, "www.bank.example", None);
    assert_eq!((d.action, d.reason), (Action::Bypass, "policy"));
    let d = ask(&e, "192.0.2.1", None, "blocked.example", None);
    assert_eq!((d.action, d.reason), (Action::Block, "blocked:domain"));
    let d = ask(&e, "192.0.2.1", None, "zoom.us", None);
    assert_eq!((d.action, d.reason), (Action::Bypass, "global"));
    assert_eq!(d.app.as_deref(), Some("zoom-meetings"));
    let d = ask(&e, "192.0.2.1", None, "www.tiktok.com", None);
    assert_eq!((d.action, d.reason), (Action::Block, "blocked:app"));
    let d = ask(&e, "192.0.2.1", None, "www.dropbox.com", None);
    assert_eq!((d.action, d.reason), (Action::Bypass, "policy"));
    let d = ask(&e, "192.0.2.1", None, "example.org", None);
    assert_eq!((d.action, d.reason), (Action::Decrypt, "default"));
    assert!(!d.trace.is_empty());
}

#[test]
fn policy_selection_by_network_and_user() {
    let e = engine(POLICIES);
    let d = ask(&e, "10.1.2.3", Some("alice"), "example.org", None);
    assert_eq!(&*d.policy, "finance");
    assert_eq!((d.action, d.reason), (Action::Bypass, "policy-off"));
    let d = ask(&e, "10.1.2.3", Some("bob"), "example.org", None);
    assert_eq!(&*d.policy, "default");
    let d = ask(&e, "10.1.2.3", None, "example.org", None);
    assert_eq!(&*d.policy, "default");
}

#[test]
fn sni_mismatch_never_widens_a_bypass() {
    let e = engine(POLICIES);
    let d = ask(
        &e,
        "192.0.2.1",
        None,
        "evil.example",
        Some("www.bank.example"),
    );
    assert_eq!(
        (d.action, d.reason, d.sni_mismatch),
        (Action::Decrypt, "sni_mismatch", true)
    );
    let d = ask(
        &e,
        "192.0.2.1",
        None,
        "www.bank.example",
        Some("evil.example"),
    );
    assert_eq!(d.action, Action::Decrypt);
    let d = ask(
        &e,
        "192.0.2.1",
        None,
        "blocked.example",
        Some("www.bank.example"),
    );
    assert_eq!(d.action, Action::Block);
    let d = ask(
        &e,
        "192.0.2.1",
        None,
        "a.bank.example",
        Some("b.bank.example"),
    );
    assert_eq!((d.action, d.reason), (Action::Bypass, "policy"));
    let d = ask(&e, "192.0.2.1", None, "127.0.0.1", Some("www.bank.example"));
    assert_eq!(d.action, Action::Decrypt);
}

#[test]
fn global_bypass_can_be_turned_off_per_policy() {
    let e = engine("[[policy]]\nname = \"default\"\nglobal_bypass = false\n");
    let d = ask(&e, "192.0.2.1", None, "zoom.us", None);
    assert_eq!(d.action, Action::Decrypt);
}

#[test]
fn expired_exceptions_no_longer_apply() {
    let e = engine("[[policy]]\nname = \"default\"\nbypass = { domains = [{ value = \"old.example\", expires = \"1970-01-01\" }] }\n");
    let host = Host::parse("old.example").unwrap();
    let q = |now| Query {
        client: "192.0.2.1".parse().unwrap(),
        user: None,
        host: Some(&host),
        sni: None,
        ja4: None,
        now,
        explain: false,
    };
    assert_eq!(
        e.decide(&q(1_000), &Exceptions::empty()).action,
        Action::Bypass
    );
    assert_eq!(
        e.decide(&q(100_000), &Exceptions::empty()).action,
        Action::Decrypt
    );
}

#[test]
fn learned_bypass_applies_only_in_learn_mode_and_never_over_a_block() {
    let learn = engine("[pinning]\nmode = \"learn\"\n[[policy]]\nname = \"default\"\nblock = { domains = [\"blocked.example\"] }\n");
    let report = engine("");
    let mut ex = Exceptions::empty();
    for h in ["pinned.example", "blocked.example"] {
        ex.learn(
            DomainName::parse(h).unwrap(),
            Grant {
                ja4: Some("fp".into()),
                expires: Some(10_000),
                evidence: 3,
            },
        );
    }
    let host = Host::parse("pinned.example").unwrap();
    let blocked = Host::parse("blocked.example").unwrap();
    let q = |h, ja4| Query {
        client: "192.0.2.1".parse().unwrap(),
        user: None,
        host: Some(h),
        sni: None,
        ja4,
        now: 1_000,
        explain: false,
    };
    let d = learn.decide(&q(&host, Some("fp")), &ex);
    assert_eq!(
        (d.action, d.reason, d.evidence),
        (Action::Bypass, "learned", Some(3))
    );
    assert_eq!(
        learn.decide(&q(&host, Some("other")), &ex).action,
        Action::Decrypt
    );
    assert_eq!(
        report.decide(&q(&host, Some("fp")), &ex).action,
        Action::Decrypt
    );
    assert_eq!(
        learn.decide(&q(&blocked, Some("fp")), &ex).action,
        Action::Block
    );
}

#[test]
fn hits_are_counted_per_rule() {
    let e = engine(POLICIES);
    let host = Host::parse("www.bank.example").unwrap();
    for explain in [false, false, false, true] {
        let q = Query {
            client: "192.0.2.1".parse().unwrap(),
            user: None,
            host: Some(&host),
            sni: None,
            ja4: None,
            now: 0,
            explain,
        };
        e.decide(&q, &Exceptions::empty());
    }
    let (idx, _) = e
        .rules()
        .iter()
        .enumerate()
        .find(|(_, r)| r.value == "*.bank.example")
        .unwrap();
    assert_eq!(e.hits()[idx], 3, "explanations are not counted");
}
