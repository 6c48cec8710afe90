use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;

fn pat(s: &str) -> Pattern {
    Pattern::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn name(s: &str) -> DomainName {
    DomainName::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn set(patterns: &[(&str, u32)]) -> DomainSet<u32> {
    let mut b = DomainSetBuilder::new();
    for (p, v) in patterns {
        assert_eq!(b.insert(pat(p), *v), None, "duplicate {p}");
    }
    b.build()
}

/// `(pattern text, kind)` of the best match, for compact assertions.
fn best(set: &DomainSet<u32>, n: &str) -> Option<(String, u32)> {
    set.lookup(&name(n)).map(|(p, v)| (p.to_string(), *v))
}

#[test]
fn parses_patterns() {
    let cases: &[(&str, &str)] = &[
        ("example.com", "example.com"),
        ("Example.COM.", "example.com"),
        ("*.example.com", "*.example.com"),
        ("*.Example.Co.UK.", "*.example.co.uk"),
        ("*.bücher.test", "*.xn--bcher-kva.test"),
        ("*.blocked.test", "*.blocked.test"),
        // Bare private suffixes and unlisted single labels are single hosts: allowed exact.
        ("github.io", "github.io"),
        ("blogspot.com", "blogspot.com"),
        ("localhost", "localhost"),
        // The PSL exception rule `!www.ck` makes `www.ck` registrable.
        ("*.www.ck", "*.www.ck"),
    ];
    for (input, want) in cases {
        assert_eq!(pat(input).to_string(), *want, "input {input:?}");
        // Display parses back to the same pattern.
        assert_eq!(pat(want), pat(input));
    }
    assert_eq!(pat("*.a.test").kind(), PatternKind::Subtree);
    assert_eq!(pat("a.test").kind(), PatternKind::Exact);
    assert_eq!(pat("*.a.test").domain().as_str(), "a.test");
}

#[test]
fn refuses_bad_wildcards_and_addresses() {
    for s in [
        "*",
        "*.",
        "*x.com",
        "**.x.com",
        "a.*.com",
        "*.*.com",
        "x.com*",
        "*example.com",
    ] {
        assert!(
            matches!(Pattern::parse(s), Err(PatternError::Wildcard(_))),
            "input {s:?}: {:?}",
            Pattern::parse(s)
        );
    }
    assert_eq!(
        Pattern::parse(".example.com"),
        Err(PatternError::LeadingDot)
    );
    assert_eq!(
        Pattern::parse(""),
        Err(PatternError::Invalid(NameError::Empty))
    );
    assert_eq!(
        Pattern::parse("a..b.com"),
        Err(PatternError::Invalid(NameError::EmptyLabel))
    );
    assert_eq!(
        Pattern::parse("example.com "),
        Err(PatternError::Invalid(NameError::InvalidChar(' ')))
    );
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for s in [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "*.127.0.0.1",
        "[::ffff:127.0.0.1]",
    ] {
        assert_eq!(
            Pattern::parse(s),
            Err(PatternError::IpLiteral(loopback)),
            "input {s:?}"
        );
    }
    assert!(matches!(
        Pattern::parse("::1"),
        Err(PatternError::IpLiteral(_))
    ));
}

#[test]
fn refuses_public_suffixes() {
    let subtree = [
        ("*.com", "com"),
        ("*.co.uk", "co.uk"),
        ("*.CO.UK.", "co.uk"),
        ("*.github.io", "github.io"),
        ("*.blogspot.com", "blogspot.com"),
        ("*.s3.amazonaws.com", "s3.amazonaws.com"),
        ("*.cloudfront.net", "cloudfront.net"),
        ("*.рф", "xn--p1ai"),
        ("*.xn--p1ai", "xn--p1ai"),
        // Unlisted TLDs fall under the PSL default rule.
        ("*.test", "test"),
        ("*.localhost", "localhost"),
        // Wildcard PSL rule `*.ck`.
        ("*.foo.ck", "foo.ck"),
    ];
    for (input, suffix) in subtree {
        assert_eq!(
            Pattern::parse(input),
            Err(PatternError::PublicSuffix {
                suffix: suffix.to_owned(),
                subtree: true
            }),
            "input {input:?}"
        );
    }
    for (input, suffix) in [("com", "com"), ("co.uk", "co.uk"), ("Co.Uk.", "co.uk")] {
        assert_eq!(
            Pattern::parse(input),
            Err(PatternError::PublicSuffix {
                suffix: suffix.to_owned(),
                subtree: false
            }),
            "input {input:?}"
        );
    }
    for ok in [
        "example.com",
        "*.example.com",
        "*.example.co.uk",
        "*.x.github.io",
    ] {
        assert!(Pattern::parse(ok).is_ok(), "input {ok:?}");
    }
}

#[test]
fn error_messages_are_clear() {
    assert_eq!(
        Pattern::parse("*.co.uk").unwrap_err().to_string(),
        "`*.co.uk` covers the whole public suffix `co.uk`; patterns must be at or below a \
         registrable domain (such as `*.example.co.uk`)"
    );
    assert_eq!(
        Pattern::parse("com").unwrap_err().to_string(),
        "`com` is a public suffix, not a host; patterns must be at or below a registrable \
         domain (such as `example.com`)"
    );
    assert!(Pattern::parse("*")
        .unwrap_err()
        .to_string()
        .contains("every host"));
    assert!(Pattern::parse("127.1")
        .unwrap_err()
        .to_string()
        .contains("`127.0.0.1` is an IP address"));
    assert_eq!(
        Pattern::parse("a..b").unwrap_err().to_string(),
        "invalid domain in pattern: host name has an empty label (a leading dot, `..`, or more \
         than one trailing dot)"
    );
}

#[test]
fn matches_at_label_boundaries() {
    // PE-06.
    let p = pat("*.blocked.test");
    for yes in [
        "blocked.test",
        "BLOCKED.TEST.",
        "a.blocked.test",
        "a.b.Blocked.Test",
    ] {
        assert!(p.matches(&name(yes)), "{yes}");
    }
    for no in [
        "evilblocked.test",
        "blocked.test.evil.test",
        "blocked.tes",
        "locked.test",
        "test",
        "xblocked.test",
    ] {
        assert!(!p.matches(&name(no)), "{no}");
    }
    let e = pat("exempt.test");
    assert!(e.matches(&name("Exempt.Test.")));
    for no in ["a.exempt.test", "exempt.test.evil.test", "notexempt.test"] {
        assert!(!e.matches(&name(no)), "{no}");
    }
}

#[test]
fn idn_patterns_match_by_a_label() {
    // PE-07: a U-label rule is the A-label rule; homographs and `fass` are different names.
    assert_eq!(pat("*.bücher.test"), pat("*.xn--bcher-kva.test"));
    assert!(pat("*.bücher.test").matches(&name("www.xn--bcher-kva.test")));
    assert!(pat("*.xn--bcher-kva.test").matches(&name("WWW.BÜCHER.TEST")));
    assert!(!pat("faß.test").matches(&name("fass.test")));
    assert!(pat("faß.test").matches(&name("xn--fa-hia.test")));
    // Cyrillic `е` (U+0435) in place of Latin `e`.
    assert!(!pat("exempt.test").matches(&name("\u{435}xempt.test")));
    assert!(!pat("*.exempt.test").matches(&name("a.\u{435}xempt.test")));
}

#[test]
fn warns_about_shared_infrastructure() {
    let subtree = [
        "*.d111.cloudfront.net",
        "*.amazonaws.com",
        "*.bucket.s3.amazonaws.com",
        "*.windows.net",
        "*.core.windows.net",
        "*.acct.blob.core.windows.net",
        "*.x.googleapis.com",
    ];
    for s in subtree {
        let w = pat(s).warning();
        assert!(
            w.is_some_and(|w| w.starts_with("this pattern covers")),
            "{s}: {w:?}"
        );
    }
    let w = pat("d111.cloudfront.net").warning();
    assert_eq!(
        w,
        Some(
            "this host is under `cloudfront.net`, a shared CDN used by many unrelated \
             customers; make sure it is dedicated to the vendor"
        )
    );
    // The most specific listed suffix names the message.
    assert!(pat("*.b.s3.amazonaws.com")
        .warning()
        .is_some_and(|w| w.contains("`s3.amazonaws.com`")));
    for s in [
        "example.com",
        "*.example.com",
        "notcloudfront.net",
        "*.microsoft.com",
        "windows.net",
    ] {
        assert_eq!(pat(s).warning(), None, "{s}");
    }
}

#[test]
fn lookup_prefers_the_most_specific() {
    let s = set(&[
        ("*.example.com", 1),
        ("*.a.example.com", 2),
        ("a.example.com", 3),
        ("b.a.example.com", 4),
        ("*.other.test", 5),
    ]);
    assert_eq!(s.len(), 5);
    let cases: &[(&str, Option<(&str, u32)>)] = &[
        ("example.com", Some(("*.example.com", 1))),
        ("x.example.com", Some(("*.example.com", 1))),
        ("a.example.com", Some(("a.example.com", 3))),
        ("x.a.example.com", Some(("*.a.example.com", 2))),
        ("b.a.example.com", Some(("b.a.example.com", 4))),
        ("c.b.a.example.com", Some(("*.a.example.com", 2))),
        ("EXAMPLE.COM.", Some(("*.example.com", 1))),
        ("other.test", Some(("*.other.test", 5))),
        ("evilexample.com", None),
        ("example.com.evil.test", None),
        ("com", None),
        ("test", None),
    ];
    for (n, want) in cases {
        let want = want.map(|(p, v)| (p.to_owned(), v));
        assert_eq!(best(&s, n), want, "name {n}");
    }
    let (p, _) = s.lookup(&name("x.a.example.com")).unwrap();
    assert_eq!(p.kind(), PatternKind::Subtree);
    assert_eq!(p.domain(), "a.example.com");
    assert_eq!(p.to_pattern(), pat("*.a.example.com"));
}

#[test]
fn builder_keeps_the_first_and_reports_duplicates() {
    let mut b = DomainSetBuilder::new();
    assert_eq!(b.insert(pat("*.example.com"), "first"), None);
    assert_eq!(b.insert(pat("*.EXAMPLE.com."), "second"), Some("second"));
    assert_eq!(b.insert(pat("example.com"), "exact"), None);
    assert_eq!(b.len(), 2);
    assert_eq!(b.get(&pat("*.example.com")), Some(&"first"));
    assert_eq!(b.get(&pat("x.example.com")), None);
    let s = b.build();
    assert_eq!(s.len(), 2);
    assert_eq!(s.get(&pat("example.com")), Some(&"exact"));
    let mut all: Vec<_> = s.iter().map(|(p, v)| (p.to_string(), *v)).collect();
    all.sort();
    assert_eq!(
        all,
        [
            ("*.example.com".to_owned(), "first"),
            ("example.com".to_owned(), "exact")
        ]
    );
    assert!(DomainSet::<u8>::default().is_empty());
    assert_eq!(format!("{s:?}"), "DomainSet { len: 2, .. }");
}

#[test]
fn lenient_insert_for_bulk_lists() {
    let mut b = DomainSetBuilder::new();
    assert_eq!(b.insert_lenient("Ads.Example.COM", 1), Ok(None));
    assert_eq!(b.insert_lenient("*.ads.example.com", 2), Ok(Some(2)));
    assert_eq!(b.insert_lenient("tracker.bücher.test", 3), Ok(None));
    assert!(matches!(
        b.insert_lenient("com", 4),
        Err(PatternError::PublicSuffix { .. })
    ));
    assert!(matches!(
        b.insert_lenient("github.io", 4),
        Err(PatternError::PublicSuffix { .. })
    ));
    assert!(matches!(
        b.insert_lenient("1.2.3.4", 4),
        Err(PatternError::IpLiteral(_))
    ));
    assert!(matches!(
        b.insert_lenient("bad..name", 4),
        Err(PatternError::Invalid(_))
    ));
    assert!(b.insert_lenient(" padded.test", 4).is_err());
    let s = b.build();
    assert_eq!(s.len(), 2);
    assert_eq!(
        best(&s, "x.ads.example.com"),
        Some(("*.ads.example.com".into(), 1))
    );
    assert_eq!(
        best(&s, "tracker.xn--bcher-kva.test"),
        Some(("*.tracker.xn--bcher-kva.test".into(), 3))
    );
}

#[test]
fn serde_round_trip() {
    let p: Pattern = serde_json::from_str("\"*.Bücher.test\"").unwrap();
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        "\"*.xn--bcher-kva.test\""
    );
    let err = serde_json::from_str::<Pattern>("\"*.com\"").unwrap_err();
    assert!(err.to_string().contains("public suffix"), "{err}");
}

/// Names over a tiny alphabet so that patterns and names collide often, including labels that
/// are suffixes of each other (`b` / `ab`) to exercise label boundaries.
fn small_name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(&["a", "b", "ab", "xn--bcher-kva"][..]),
        1..5,
    )
    .prop_map(|labels| format!("{}.test", labels.join(".")))
}

fn small_pattern() -> impl Strategy<Value = (bool, String)> {
    (any::<bool>(), small_name())
}

/// The reference: every pattern that matches, ranked by (exact first, then longest domain).
fn brute_force<'a>(patterns: &'a [(Pattern, u32)], n: &DomainName) -> Option<&'a (Pattern, u32)> {
    patterns
        .iter()
        .filter(|(p, _)| p.matches(n))
        .max_by_key(|(p, _)| (p.kind() == PatternKind::Exact, p.domain().as_str().len()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn lookup_agrees_with_brute_force(
        raw in prop::collection::vec(small_pattern(), 0..40),
        names in prop::collection::vec(small_name(), 1..20),
    ) {
        let mut b = DomainSetBuilder::new();
        let mut kept: Vec<(Pattern, u32)> = Vec::new();
        for (i, (subtree, d)) in raw.iter().enumerate() {
            let d = DomainName::parse(d).unwrap();
            let p = if *subtree { Pattern::Subtree(d) } else { Pattern::Exact(d) };
            let v = u32::try_from(i).unwrap();
            match b.insert(p.clone(), v) {
                None => kept.push((p, v)),
                Some(back) => {
                    prop_assert_eq!(back, v);
                    prop_assert!(kept.iter().any(|(k, _)| *k == p));
                }
            }
        }
        let s = b.build();
        prop_assert_eq!(s.len(), kept.len());
        prop_assert_eq!(s.iter().count(), kept.len());
        for n in &names {
            let n = DomainName::parse(n).unwrap();
            let want = brute_force(&kept, &n).map(|(p, v)| (p.clone(), *v));
            let got = s.lookup(&n).map(|(p, v)| (p.to_pattern(), *v));
            prop_assert_eq!(got, want, "name {}", n);
        }
    }

    #[test]
    fn subtree_matches_exactly_the_domain_and_below(d in small_name(), n in small_name()) {
        let p = Pattern::Subtree(DomainName::parse(&d).unwrap());
        let name = DomainName::parse(&n).unwrap();
        let expected = n == d || n.ends_with(&format!(".{d}"));
        prop_assert_eq!(p.matches(&name), expected);
    }

    #[test]
    fn case_and_trailing_dot_do_not_change_matches(
        (subtree, d) in small_pattern(),
        n in small_name(),
    ) {
        let text = if subtree { format!("*.{d}") } else { d.clone() };
        let p = Pattern::parse(&text).unwrap();
        let upper = Pattern::parse(&format!("{}.", text.to_ascii_uppercase())).unwrap();
        prop_assert_eq!(&p, &upper);
        let plain = name(&n);
        let shouted = name(&format!("{}.", n.to_ascii_uppercase()));
        prop_assert_eq!(p.matches(&plain), p.matches(&shouted));
        prop_assert_eq!(p.matches(&plain), upper.matches(&shouted));
    }

    #[test]
    fn u_label_rule_equals_a_label_rule(prefix in "[a-z]{1,5}", n in small_name()) {
        let u = Pattern::parse(&format!("*.{prefix}.bücher.test")).unwrap();
        let a = Pattern::parse(&format!("*.{prefix}.xn--bcher-kva.test")).unwrap();
        prop_assert_eq!(&u, &a);
        let n = name(&format!("{prefix}.{n}"));
        prop_assert_eq!(u.matches(&n), a.matches(&n));
    }

    #[test]
    fn pattern_parse_never_panics(s in any::<String>()) {
        if let Ok(p) = Pattern::parse(&s) {
            prop_assert_eq!(Pattern::parse(&p.to_string()), Ok(p));
        }
    }
}

/// Deterministic pseudo-random generator (xorshift64*), so the perf test needs no `rand`.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

/// Category-list-like names: 2–4 labels of 3–12 letters/digits under a common TLD, about 20
/// characters in all (UT1 entries average 15–25).
fn list_name(rng: &mut XorShift) -> String {
    const TLDS: [&str; 8] = ["com", "net", "org", "de", "fr", "co.uk", "info", "ru"];
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let labels = 1 + rng.below(3);
    let mut s = String::new();
    for _ in 0..labels {
        let len = 3 + rng.below(10);
        for _ in 0..len {
            s.push(char::from(ALPHABET[rng.below(ALPHABET.len())]));
        }
        s.push('.');
    }
    s.push_str(TLDS[rng.below(TLDS.len())]);
    s
}

fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// 1M patterns: build time, resident memory and lookup latency. Run with
/// `cargo test -p sluice-policy --release -- --ignored --nocapture perf_one_million`.
#[test]
#[ignore = "performance measurement; run in release with --ignored --nocapture"]
fn perf_one_million_patterns() {
    use std::hint::black_box;
    use std::time::Instant;

    const N: usize = 1_000_000;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let lines: Vec<String> = (0..N).map(|_| list_name(&mut rng)).collect();
    let avg_len = lines.iter().map(String::len).sum::<usize>() / N;
    let (rss_before, _) = rss_kib().unwrap_or_default();

    // The bulk path, as a category list loader would use it.
    let start = Instant::now();
    let mut b = DomainSetBuilder::with_capacity(N);
    let mut rejected = 0usize;
    for (i, line) in lines.iter().enumerate() {
        if !matches!(b.insert_lenient(line, u32::try_from(i).unwrap()), Ok(None)) {
            rejected += 1;
        }
    }
    let set = b.build();
    let build = start.elapsed();
    let (rss_after, hwm) = rss_kib().unwrap_or_default();

    // The strict path (Pattern::parse, as for policy files) for comparison, on 100k.
    let start = Instant::now();
    let mut strict = DomainSetBuilder::new();
    for (i, line) in lines.iter().take(100_000).enumerate() {
        if let Ok(p) = Pattern::parse(&format!("*.{line}")) {
            let _ = strict.insert(p, i);
        }
    }
    let strict_build = start.elapsed();
    drop(strict);

    // Lookups: half are subdomains of listed names (hits), half are fresh names (misses).
    let probes: Vec<DomainName> = (0..200_000)
        .map(|i| {
            let n = if i % 2 == 0 {
                format!("www.{}", lines[rng.below(N)])
            } else {
                format!("cdn.{}", list_name(&mut rng))
            };
            DomainName::parse(&n).unwrap()
        })
        .collect();
    // Batches of 100 keep clock overhead (~20 ns) out of the per-lookup figure.
    let mut per_lookup_ns: Vec<f64> = Vec::new();
    let mut hits = 0usize;
    for batch in probes.chunks(100) {
        let start = Instant::now();
        for n in batch {
            if black_box(set.lookup(black_box(n))).is_some() {
                hits += 1;
            }
        }
        per_lookup_ns.push(start.elapsed().as_nanos() as f64 / batch.len() as f64);
    }
    per_lookup_ns.sort_by(f64::total_cmp);
    let pct = |p: f64| per_lookup_ns[((per_lookup_ns.len() - 1) as f64 * p) as usize];

    // Parsing what arrives on the wire (SNI-like) costs too.
    let raw: Vec<String> = probes
        .iter()
        .take(100_000)
        .map(|n| n.to_string().to_uppercase())
        .collect();
    let start = Instant::now();
    for s in &raw {
        black_box(Host::parse(black_box(s)).ok());
    }
    let parse_ns = start.elapsed().as_nanos() as f64 / raw.len() as f64;

    // What the public-suffix check adds to the bulk path.
    let start = Instant::now();
    for line in &lines {
        black_box(psl::suffix(black_box(line.as_bytes())));
    }
    let psl_ns = start.elapsed().as_nanos() as f64 / N as f64;

    println!(
        "patterns: {} inserted, {rejected} duplicate/rejected, avg {avg_len} chars",
        set.len()
    );
    println!("build (insert_lenient, 1M): {build:?}");
    println!("build (Pattern::parse + insert, 100k): {strict_build:?}");
    println!(
        "RSS: {rss_before} KiB before build, {rss_after} KiB after, delta {} KiB; peak {hwm} KiB",
        rss_after.saturating_sub(rss_before)
    );
    println!(
        "lookup ns (batches of 100): median {:.0}, p90 {:.0}, p99 {:.0}, max {:.0}; hits {hits}/{}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        probes.len()
    );
    println!("Host::parse ns/name (uppercase ASCII): {parse_ns:.0}");
    println!("psl::suffix ns/name: {psl_ns:.0}");
    drop(lines);
    let (rss_final, _) = rss_kib().unwrap_or_default();
    println!("RSS with only the set (input lines dropped): {rss_final} KiB");
    assert!(pct(0.5) < 1000.0, "median lookup over 1 µs");
}
