use super::*;

fn name(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}

fn rules(list: &[&str]) -> UrlRules<usize> {
    UrlRules::build(
        list.iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), i))
            .collect(),
    )
    .unwrap()
}

#[test]
fn normalises_paths() {
    let cases = [
        ("/a/b/c/./../../g", "/a/g"), // RFC 3986 §5.2.4 example
        ("/a/../downloads/x", "/downloads/x"),
        ("/../../downloads/x", "/downloads/x"),
        ("//downloads//x", "/downloads/x"),
        ("/a//../downloads/x", "/downloads/x"),
        ("/%64ownloads/x", "/downloads/x"),
        ("/%2e%2E/downloads/x", "/downloads/x"),
        ("/a/%2e%2e/downloads/x", "/downloads/x"),
        ("/a%2fb", "/a%2Fb"),
        ("/a%zzb", "/a%zzb"),
        ("/a%4", "/a%4"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/a/b/", "/a/b/"),
        ("", "/"),
        ("*", "/*"),
        ("/x?y=/../z#f", "/x"),
        ("/~user/%7Efoo", "/~user/~foo"),
    ];
    for (input, want) in cases {
        assert_eq!(
            String::from_utf8(normalize_path(input)).unwrap(),
            want,
            "{input}"
        );
    }
}

#[test]
fn prefix_rules_match_at_segment_boundaries() {
    let r = rules(&["example.com/admin", "example.com/static/"]);
    let host = name("example.com");
    for (path, want) in [
        ("/admin", Some(&0)),
        ("/admin/", Some(&0)),
        ("/admin/users?x=1", Some(&0)),
        ("/administrator", None),
        ("/Admin", None), // paths are case-sensitive
        ("/static/app.js", Some(&1)),
        ("/static", None),
        ("/", None),
    ] {
        assert_eq!(r.find(&host, path), want, "{path}");
    }
}

#[test]
fn glob_rules_cover_the_whole_path() {
    let r = rules(&[
        "example.com/downloads/*",
        "example.com/*.exe",
        "example.com/a*b*c",
    ]);
    let host = name("example.com");
    for (path, want) in [
        ("/downloads/x", Some(&0)),
        ("/downloads/", Some(&0)),
        ("/downloads/a/b.zip", Some(&0)),
        ("/downloads", None),
        ("/other/setup.exe", Some(&1)),
        ("/setup.exe.txt", None),
        ("/abc", Some(&2)),
        ("/aXbYc", Some(&2)),
        ("/acb", None),
        ("/abcX", None),
    ] {
        assert_eq!(r.find(&host, path), want, "{path}");
    }
}

#[test]
fn spelling_cannot_evade_a_rule() {
    let r = rules(&["example.com/downloads/*"]);
    let host = name("example.com");
    for path in [
        "/a/../downloads/x",
        "/./downloads/x",
        "//downloads/x",
        "/%64ownloads/x",
        "/downloads%2Fx",        // a server that decodes %2F sees /downloads/x
        "/a%2F..%2Fdownloads/x", // and this as /a/../downloads/x
        "/x/%2e%2e/downloads/evil.exe",
    ] {
        assert_eq!(r.find(&host, path), Some(&0), "{path}");
    }
    assert_eq!(r.find(&host, "/downloadsx"), None);
}

#[test]
fn host_patterns_match_case_insensitively_at_label_boundaries() {
    let r = rules(&["*.example.com/admin", "www.example.org/x", "EXAMPLE.net"]);
    assert_eq!(r.find(&name("example.com"), "/admin"), Some(&0));
    assert_eq!(r.find(&name("A.B.Example.COM"), "/admin/x"), Some(&0));
    assert_eq!(r.find(&name("badexample.com"), "/admin"), None);
    assert_eq!(r.find(&name("www.example.org"), "/x"), Some(&1));
    assert_eq!(r.find(&name("example.org"), "/x"), None);
    assert_eq!(r.find(&name("a.www.example.org"), "/x"), None);
    // A bare host rule blocks every path of that host.
    assert_eq!(r.find(&name("example.net"), "/anything"), Some(&2));
}

#[test]
fn first_rule_in_build_order_wins() {
    let r = rules(&[
        "*.example.com/a/*",
        "www.example.com/a/b",
        "www.example.com/",
    ]);
    assert_eq!(r.find(&name("www.example.com"), "/a/b"), Some(&0));
    assert_eq!(r.find(&name("www.example.com"), "/c"), Some(&2));
}

#[test]
fn refused_rules_are_all_reported_with_their_index() {
    let entries = vec![
        ("example.com/ok".to_string(), ()),
        ("https://example.com/x".to_string(), ()),
        ("/no-host".to_string(), ()),
        ("*.com/x".to_string(), ()),
        ("example.com/x?y".to_string(), ()),
        ("ex*ample.com/x".to_string(), ()),
    ];
    let errors = UrlRules::build(entries).unwrap_err();
    let indices: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, [1, 2, 3, 4, 5]);
    assert!(errors[0].1.contains("without a scheme"), "{}", errors[0].1);
    assert!(errors[3].1.contains("path only"), "{}", errors[3].1);
}

#[test]
fn patterns_display_normalised_and_round_trip() {
    for (input, shown) in [
        ("Example.COM/a/./b/*", "example.com/a/b/*"),
        ("*.example.com", "*.example.com/"),
        ("example.com/%7Ex", "example.com/~x"),
    ] {
        let p = UrlPattern::parse(input).unwrap();
        assert_eq!(p.to_string(), shown);
        assert_eq!(UrlPattern::parse(shown).unwrap(), p);
    }
    assert!(UrlPattern::parse("example.com/*.exe").unwrap().is_glob());
}

#[test]
fn empty_rules_never_match() {
    let r: UrlRules<()> = UrlRules::build(Vec::new()).unwrap();
    assert!(r.is_empty());
    assert_eq!(r.find(&name("example.com"), "/"), None);
}
