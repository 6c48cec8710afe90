//! Host names and domain patterns from arbitrary UTF-8.
//!
//! Invariants: no panic; the normalised text of a host or pattern parses back to the same value
//! (so logs, `sluice check` and config round-trips agree); a pattern matches its own domain; the
//! SNI parser (`parse_ascii`) agrees with the general one on ASCII.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_policy::domain::Pattern;
use sluice_policy::name::{DomainName, Host};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    let host = Host::parse(s);
    if let Ok(h) = &host {
        let text = h.to_string();
        assert_eq!(
            Host::parse(&text).as_ref(),
            Ok(h),
            "host {text:?} did not round-trip"
        );
        if let Some(d) = h.as_domain() {
            assert!(d.is_within(d));
            assert_eq!(DomainName::parse(d.as_str()).as_ref(), Ok(d));
        }
    }
    if s.is_ascii() {
        assert_eq!(Host::parse_ascii(s), host, "parse_ascii disagrees on ASCII");
    }

    if let Ok(p) = Pattern::parse(s) {
        let text = p.to_string();
        assert_eq!(
            Pattern::parse(&text).as_ref(),
            Ok(&p),
            "pattern {text:?} did not round-trip"
        );
        assert!(
            p.matches(p.domain()),
            "pattern {text:?} does not match its own domain"
        );
        let _ = p.warning();
    }
});
