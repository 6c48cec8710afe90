use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn domain(s: &str) -> String {
    match Host::parse(s) {
        Ok(Host::Domain(d)) => d.to_string(),
        other => panic!("{s:?}: expected a domain, got {other:?}"),
    }
}

fn v4(s: &str) -> Result<Host, NameError> {
    Ok(Host::Ip(IpAddr::V4(s.parse().unwrap())))
}

#[test]
fn normalises_domains() {
    let long_label = "a".repeat(63);
    // 4 × 63 + 3 dots = 255; trimmed to 253 by shortening the last label.
    let max_name = format!("{l}.{l}.{l}.{}", "a".repeat(61), l = long_label);
    assert_eq!(max_name.len(), 253);
    let cases: &[(&str, &str)] = &[
        // PE-06: case and exactly one trailing dot.
        ("blocked.test", "blocked.test"),
        ("BLOCKED.TEST", "blocked.test"),
        ("blocked.test.", "blocked.test"),
        ("Blocked.Test.", "blocked.test"),
        ("localhost", "localhost"),
        // `_` is accepted (real names use it), identically everywhere (PE-08).
        ("_dmarc.Example.com", "_dmarc.example.com"),
        ("a_b.test", "a_b.test"),
        // Hyphen placement is not policed (YouTube CDN nodes, UTS #46 CheckHyphens=false).
        ("r3---sn-abc.googlevideo.com", "r3---sn-abc.googlevideo.com"),
        ("-a.test", "-a.test"),
        // Not a number: `123abc` is neither decimal nor a valid IPv4 number.
        ("example.123abc", "example.123abc"),
        ("0xg.test", "0xg.test"),
        // PE-07: U-labels become A-labels, non-transitional (ß stays ß).
        ("bücher.test", "xn--bcher-kva.test"),
        ("BÜCHER.TEST", "xn--bcher-kva.test"),
        ("faß.test", "xn--fa-hia.test"),
        ("xn--fa-hia.test", "xn--fa-hia.test"),
        ("XN--FA-HIA.TEST", "xn--fa-hia.test"),
        ("xn--bcher-kva.test.", "xn--bcher-kva.test"),
        ("ѕрооғ.test", "xn--n1aae7f7o.test"),
        ("_srv.Bücher.test", "_srv.xn--bcher-kva.test"),
        ("_srv.xn--bcher-kva.test", "_srv.xn--bcher-kva.test"),
        // UTS #46 mapping: ideographic full stop, full-width letters, ignored soft hyphen.
        ("blocked\u{3002}test", "blocked.test"),
        ("ｂｌｏｃｋｅｄ.test", "blocked.test"),
        ("bl\u{AD}ocked.test", "blocked.test"),
        (&long_label, &long_label),
        (&max_name, &max_name),
    ];
    for (input, want) in cases {
        assert_eq!(domain(input), *want, "input {input:?}");
    }
}

#[test]
fn refuses_malformed_names() {
    let cases: &[(&str, NameError)] = &[
        ("", NameError::Empty),
        (".", NameError::Empty),
        ("blocked.test..", NameError::EmptyLabel),
        (".blocked.test", NameError::EmptyLabel),
        ("a..b", NameError::EmptyLabel),
        ("..", NameError::EmptyLabel),
        ("a b.test", NameError::InvalidChar(' ')),
        ("ok.test\0evil", NameError::InvalidChar('\0')),
        ("ok.test\nevil", NameError::InvalidChar('\n')),
        ("ex%61mple.com", NameError::InvalidChar('%')),
        ("*.example.com", NameError::InvalidChar('*')),
        ("a/b.test", NameError::InvalidChar('/')),
        ("user@host.test", NameError::InvalidChar('@')),
        // Non-ASCII that maps to forbidden ASCII: full-width solidus.
        ("a\u{FF0F}b.test", NameError::InvalidChar('/')),
        ("a\u{FF1A}b.test", NameError::InvalidChar(':')),
        // Not valid Punycode / not a valid IDN.
        ("xn--.test", NameError::Idna),
        ("xn--zz-.test", NameError::Idna),
        // Ports and zones are not part of a host.
        ("example.com:443", NameError::InvalidIpv6),
        ("[::1", NameError::InvalidIpv6),
        ("[127.0.0.1]", NameError::InvalidIpv6),
        ("fe80::1%eth0", NameError::InvalidIpv6),
        ("[]", NameError::InvalidIpv6),
    ];
    for (input, want) in cases {
        assert_eq!(Host::parse(input).as_ref(), Err(want), "input {input:?}");
    }
}

#[test]
fn enforces_lengths() {
    let label64 = "a".repeat(64);
    assert_eq!(
        Host::parse(&format!("{label64}.test")),
        Err(NameError::LabelTooLong)
    );
    // PE-08: 254 and 300 characters.
    for len in [254, 300] {
        let name = format!("{}ab", "a.".repeat((len - 2) / 2));
        assert_eq!(name.len(), len);
        assert_eq!(Host::parse(&name), Err(NameError::TooLong), "len {len}");
    }
    // A U-label whose A-label is too long.
    let long_u = format!("{}.test", "ü".repeat(60));
    assert_eq!(Host::parse(&long_u), Err(NameError::LabelTooLong));
    assert_eq!(Host::parse(&"a".repeat(5000)), Err(NameError::TooLong));
}

#[test]
fn canonicalises_ip_literals() {
    // PE-17: every spelling of loopback is an address, never a domain name.
    for s in [
        "127.0.0.1",
        "127.0.0.1.",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0X7F000001",
        "017700000001",
        "0177.0.0.1",
        "0x7f.1",
        "0x7f.0.0.0x1",
        "127.0x0.0.01",
        "１２７.０.０.１",
        "::ffff:127.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
    ] {
        assert_eq!(Host::parse(s), v4("127.0.0.1"), "input {s:?}");
    }
    assert_eq!(Host::parse("0"), v4("0.0.0.0"));
    assert_eq!(Host::parse("0x"), v4("0.0.0.0"));
    assert_eq!(Host::parse("255.255.255.255"), v4("255.255.255.255"));
    assert_eq!(Host::parse("4294967295"), v4("255.255.255.255"));
    assert_eq!(Host::parse("1.2.65535"), v4("1.2.255.255"));
    for s in ["[::1]", "::1", "[0:0:0:0:0:0:0:1]"] {
        assert_eq!(
            Host::parse(s),
            Ok(Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))),
            "input {s:?}"
        );
    }
    // IPv4-compatible (deprecated) addresses stay IPv6: only ::ffff:0:0/96 is IPv4 on the wire.
    assert!(matches!(
        Host::parse("::127.0.0.1"),
        Ok(Host::Ip(IpAddr::V6(_)))
    ));
}

#[test]
fn refuses_invalid_ipv4() {
    for s in [
        "1.2.3.256",
        "1.2.3.4.5",
        "4294967296",
        "0x100000000",
        "1.2.3.09",
        "256.1",
        "1.256.1",
        "foo.123",
        "foo.0x1f",
        "example.0x",
        "1.2.3.4.",
        "99999999999999999999999999999999",
        "0x99999999999999999999999999999999",
    ] {
        let got = Host::parse(s);
        // `1.2.3.4.` is fine (one trailing dot); all others fail and none is a domain.
        if s == "1.2.3.4." {
            assert_eq!(got, v4("1.2.3.4"));
        } else {
            assert_eq!(got, Err(NameError::InvalidIpv4), "input {s:?}");
        }
    }
}

#[test]
fn domain_name_refuses_addresses() {
    assert_eq!(
        DomainName::parse("127.1"),
        Err(NameError::NotADomain(IpAddr::V4(Ipv4Addr::LOCALHOST)))
    );
    assert!(DomainName::parse("[::1]").is_err());
    assert_eq!(domain("example.com"), "example.com");
}

#[test]
fn parse_ascii_refuses_u_labels() {
    assert_eq!(Host::parse_ascii("bücher.test"), Err(NameError::NonAscii));
    assert_eq!(
        Host::parse_ascii("XN--BCHER-KVA.test."),
        Host::parse("xn--bcher-kva.test")
    );
}

#[test]
fn labels_and_parent() {
    let d = DomainName::parse("www.Example.co.uk").unwrap();
    assert_eq!(
        d.labels().collect::<Vec<_>>(),
        ["www", "example", "co", "uk"]
    );
    assert_eq!(d.labels().next_back(), Some("uk"));
    assert_eq!(d.parent(), Some("example.co.uk"));
    assert_eq!(DomainName::parse("localhost").unwrap().parent(), None);
    assert!(d.is_within(&DomainName::parse("co.uk").unwrap()));
    assert!(d.is_within(&d));
    assert!(!d.is_within(&DomainName::parse("ample.co.uk").unwrap()));
}

#[test]
fn display_and_serde() {
    assert_eq!(Host::parse("[::1]").unwrap().to_string(), "::1");
    assert_eq!(Host::parse("0x7f000001").unwrap().to_string(), "127.0.0.1");
    let d: DomainName = serde_json::from_str("\"Bücher.Test.\"").unwrap();
    assert_eq!(d.as_str(), "xn--bcher-kva.test");
    assert_eq!(serde_json::to_string(&d).unwrap(), "\"xn--bcher-kva.test\"");
    let h: Host = serde_json::from_str("\"127.1\"").unwrap();
    assert_eq!(serde_json::to_string(&h).unwrap(), "\"127.0.0.1\"");
    assert!(serde_json::from_str::<DomainName>("\"a..b\"").is_err());
    assert_eq!(format!("{d:?}"), "DomainName(\"xn--bcher-kva.test\")");
}

#[test]
fn error_codes_are_distinct() {
    let all = [
        NameError::Empty,
        NameError::TooLong,
        NameError::EmptyLabel,
        NameError::LabelTooLong,
        NameError::InvalidChar('x'),
        NameError::Idna,
        NameError::InvalidIpv4,
        NameError::InvalidIpv6,
        NameError::NotADomain(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        NameError::NonAscii,
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(NameError::code).collect();
    assert_eq!(codes.len(), all.len());
}

/// Host-like text: mostly name characters, some Unicode, dots and case.
fn hostish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => "[a-z0-9]{1,6}",
            2 => "[A-Z_-]{1,3}",
            1 => Just("xn--bcher-kva".to_owned()),
            1 => Just("faß".to_owned()),
            1 => Just("Bücher".to_owned()),
            1 => Just("0x7f".to_owned()),
            1 => "[0-9]{1,4}",
        ],
        1..5,
    )
    .prop_map(|labels| labels.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics(s in any::<String>()) {
        let _ = Host::parse(&s);
    }

    #[test]
    fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Host::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn parse_is_idempotent(s in prop_oneof![hostish(), any::<String>()]) {
        if let Ok(host) = Host::parse(&s) {
            prop_assert_eq!(Host::parse(&host.to_string()), Ok(host.clone()));
            if let Host::Domain(d) = &host {
                // The output is always plain ASCII and never looks like an address.
                prop_assert!(d.as_str().bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'));
                prop_assert!(!ends_in_a_number(d.as_str()));
            }
        }
    }

    #[test]
    fn case_and_one_trailing_dot_do_not_matter(s in hostish()) {
        let plain = Host::parse(&s);
        prop_assert_eq!(&Host::parse(&s.to_ascii_uppercase()), &plain);
        prop_assert_eq!(&Host::parse(&format!("{s}.")), &plain);
        prop_assert_eq!(&Host::parse(&format!("{}.", s.to_ascii_uppercase())), &plain);
        // Two trailing dots or a leading dot: never accepted.
        let two_dots = format!("{s}..");
        prop_assert!(Host::parse(&two_dots).is_err());
        let leading = format!(".{s}");
        prop_assert!(Host::parse(&leading).is_err());
    }

    #[test]
    fn every_ipv4_spelling_is_the_address(a in any::<u32>()) {
        let ip = Ipv4Addr::from(a);
        let [b0, b1, b2, b3] = ip.octets();
        let want = Ok(Host::Ip(IpAddr::V4(ip)));
        for s in [
            ip.to_string(),
            a.to_string(),
            format!("{a:#x}"),
            format!("0{a:o}"),
            format!("{b0}.{}", a & 0x00ff_ffff),
            format!("{b0}.{b1}.{}", a & 0xffff),
            format!("{b0:#x}.0{b1:o}.{b2}.{b3:#X}."),
        ] {
            prop_assert_eq!(&Host::parse(&s), &want, "input {}", s);
        }
        let mapped = format!("[::ffff:{ip}]");
        prop_assert_eq!(Host::parse(&mapped), want);
    }
}
