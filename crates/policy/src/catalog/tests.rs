use super::*;

/// Every named application of the seed's Table 1 (shared/seed/umbrella-certificate-pinning.txt),
/// in the seed's order, with `true` where the seed says "Bypassed Globally for Umbrella
/// Customers". Names are as in the seed, minus "(see table 2 for more detail)". The three unnamed
/// rows of our copy (after "Facebook Messenger", "Hype Machine" and "Todoist") are not in the
/// catalog.
const SEED_TABLE_1: [(&str, bool); 57] = [
    ("Adobe Services", true),
    ("Airbnb", false),
    ("Amazon Alexa", false),
    ("Amazon Drive", false),
    ("Amazon Kindle", false),
    ("Amazon Workspaces", false),
    ("Amplitude", true),
    ("App Dynamics", true),
    ("Apple iMessage", false),
    ("Apple Mail", false),
    ("Apple Services", true),
    ("Cisco Services", true),
    ("Citrix Workspace", false),
    ("Crashlytics", true),
    ("CrowdStrike Falcon", false),
    ("Diligent.com", false),
    ("Discord Chat", true),
    ("DocuSign Agreement Cloud", false),
    ("DropBox", false),
    ("Druva Cloud Backup", false),
    ("Egnyte Connect", false),
    ("Evernote", false),
    ("Facebook Messenger", false),
    ("Filemail", false),
    ("Foursquare", false),
    ("Giphy", true),
    ("GitHub", false),
    ("Google Drive", false),
    ("Google Play Store", false),
    ("Google Services", true),
    ("Google Workspace", false),
    ("GoToMeeting", false),
    ("Hype Machine", false),
    ("LogMein Pro", false),
    ("Microsoft Defender for Endpoint", false),
    ("Microsoft Intune", false),
    ("Microsoft Services", true),
    ("Microsoft Xbox Live", false),
    ("Netflix", false),
    ("OpenDrive", false),
    ("PayPal", false),
    ("PingOne Identity", false),
    ("Rackspace / Cloud Drive Services", true),
    ("Salesforce CRM", false),
    ("Segment", true),
    ("Signal Platform", false),
    ("Skype for Business", false),
    ("Snapchat", false),
    ("Soundcloud", false),
    ("SpiderOak", false),
    ("Spotify", false),
    ("TeamViewer", false),
    ("TikTok", false),
    ("Todoist", false),
    ("Vimeo", false),
    ("Workday HCM", false),
    ("Zoom Meetings", true),
];

/// Shared infrastructure from catalog-notes.md §4 (and the reference header): neither the suffix
/// itself nor any wildcard at, under or above it may appear. Exact hosts strictly below it are
/// allowed (vendor-operated hosts such as `fcm.googleapis.com`).
const SHARED_SUFFIXES: &[&str] = &[
    "amazonaws.com",
    "s3.amazonaws.com",
    "cloudfront.net",
    "akamaized.net",
    "akamaihd.net",
    "akamaiedge.net",
    "edgesuite.net",
    "edgekey.net",
    "fastly.net",
    "fastly-edge.com",
    "azureedge.net",
    "blob.core.windows.net",
    "cloudapp.net",
    "trafficmanager.net",
    "ods.opinsights.azure.com",
    "oms.opinsights.azure.com",
    "googleapis.com",
    "googleusercontent.com",
    "gstatic.com",
    "appspot.com",
    "firebase.app",
    "clouddrive.com",
    "rackcdn.com",
    "internap.net",
    "internapcdn.net",
    "cloudflare.com",
    "digicert.com",
    "digicert.cn",
    "entrust.net",
    "walkme.com",
    "accompany.com",
    "slido.com",
    "vbrickrev.com",
    "youtube.com",
    "googlevideo.com",
    "sharepoint.com",
];

/// Vendor domains that serve arbitrary user content (catalog-notes.md §4 "optional, high risk"):
/// no wildcard may cover them; the exact host of the domain itself may be listed (`github.com`).
const USER_CONTENT_SUBTREES: &[&str] = &[
    "discordapp.com",
    "discordapp.net",
    "dropboxusercontent.com",
    "github.com",
    "githubusercontent.com",
    "github.io",
    "fbsbx.com",
    "drive.amazonaws.com",
    "adobedtm.com",
    "adobeexchange.com",
];

/// Hosts that must not be matched by any pattern at all.
const FORBIDDEN_HOSTS: &[&str] = &[
    "codeload.github.com",
    "ghcr.io",
    "cdn.discordapp.com",
    "media.discordapp.net",
    "drive.usercontent.google.com",
    "script.google.com",
    "sites.google.com",
    "apple-relay.cloudflare.com",
    "apple-relay.fastly-edge.com",
    "cp4.cloudflare.com",
    "crl3.digicert.com",
    "crl4.digicert.com",
    "ocsp.digicert.com",
    "ocsp.digicert.cn",
    "crl.entrust.net",
    "ocsp.entrust.net",
    "vertexsmb.com",
    "www.apple.com",
    "www.google.com",
    "www.googleapis.com",
    "storage.googleapis.com",
    "firebasestorage.googleapis.com",
];

fn builtin() -> Catalog {
    Catalog::builtin().expect("the embedded catalog parses")
}

/// `(is_wildcard, domain)` for a pattern.
fn split(pattern: &str) -> (bool, String) {
    let p = pattern.to_ascii_lowercase();
    match p.strip_prefix("*.") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, p),
    }
}

/// `name` is `domain` or a subdomain of it.
fn within(name: &str, domain: &str) -> bool {
    name == domain || name.ends_with(&format!(".{domain}"))
}

/// Does the pattern match this host name?
fn covers(pattern: &str, host: &str) -> bool {
    match split(pattern) {
        (true, d) => within(host, &d),
        (false, d) => d == host,
    }
}

fn every_pattern(catalog: &Catalog) -> impl Iterator<Item = (&App, &DomainEntry)> {
    catalog
        .apps()
        .iter()
        .flat_map(|a| a.all_domains().map(move |d| (a, d)))
}

#[test]
fn builtin_parses_with_expected_counts() {
    let catalog = builtin();
    assert_eq!(catalog.apps().len(), 57);
    assert_eq!(
        catalog.apps().iter().filter(|a| a.global_bypass).count(),
        13
    );
    for app in catalog.apps() {
        assert!(
            app.pinning,
            "{}: every built-in app is known to pin",
            app.id
        );
        assert_eq!(app.verified.as_deref(), Some("2026-11-27"), "{}", app.id);
        assert!(!app.sources.is_empty(), "{}: no sources", app.id);
        assert!(!app.vendor.is_empty(), "{}: no vendor", app.id);
        assert_eq!(app.origin.file, BUILTIN_FILE);
    }
}

#[test]
fn every_seed_application_is_present_with_its_global_flag() {
    let catalog = builtin();
    let mut names: Vec<&str> = catalog.apps().iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = SEED_TABLE_1.iter().map(|(n, _)| *n).collect();
    expected.sort_unstable();
    assert_eq!(
        names, expected,
        "catalog names differ from the seed's Table 1"
    );

    for (name, global) in SEED_TABLE_1 {
        let app = catalog.apps().iter().find(|a| a.name == name);
        let app = app.unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(app.global_bypass, global, "{name}: global_bypass");
    }
    assert_eq!(SEED_TABLE_1.iter().filter(|(_, g)| *g).count(), 13);
}

#[test]
fn services_apps_have_services_and_only_service_domains() {
    let catalog = builtin();
    for id in [
        "apple-services",
        "cisco-services",
        "google-services",
        "microsoft-services",
    ] {
        let app = catalog.get(id).unwrap_or_else(|| panic!("{id} missing"));
        assert!(!app.services.is_empty(), "{id}: no services");
        // Decision documented in catalog/README.md: the union is computed, not written twice.
        assert!(app.domains.is_empty(), "{id}: app-level domains");
        assert!(app.all_domains().count() > 0, "{id}: no patterns");
        for s in &app.services {
            assert!(!s.name.is_empty());
            if !s.domains.is_empty() {
                assert!(!s.sources.is_empty(), "{id} / {}: no sources", s.name);
            }
        }
    }
    let with_services = catalog.apps().iter().filter(|a| !a.services.is_empty());
    assert_eq!(with_services.count(), 4);
}

#[test]
fn builtin_patterns_have_the_two_allowed_forms() {
    // The list includes the private section, so multi-tenant platforms count as suffixes too.
    assert_eq!(psl::domain_str("github.io"), None);
    assert_eq!(psl::domain_str("appspot.com"), None);
    for (app, d) in every_pattern(&builtin()) {
        let (_, domain) = split(&d.pattern);
        assert_eq!(d.pattern, d.pattern.to_ascii_lowercase(), "{}", app.id);
        assert!(!domain.contains('*'), "{}: {}", app.id, d.pattern);
        assert!(domain.contains('.'), "{}: {} is a TLD", app.id, d.pattern);
        assert!(
            (domain.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "{}: {}",
            app.id,
            d.pattern
        );
        // At or below a registrable domain: never a public suffix (ICANN or private section).
        assert!(
            psl::domain_str(&domain).is_some(),
            "{}: {} is a public suffix",
            app.id,
            d.pattern
        );
    }
}

#[test]
fn no_shared_infrastructure_or_user_content_patterns() {
    for (app, d) in every_pattern(&builtin()) {
        let (wildcard, domain) = split(&d.pattern);
        for shared in SHARED_SUFFIXES {
            let bad = if wildcard {
                within(&domain, shared) || within(shared, &domain)
            } else {
                domain == *shared
            };
            assert!(
                !bad,
                "{}: {} (line {}) vs {shared}",
                app.id, d.pattern, d.line
            );
        }
        for subtree in USER_CONTENT_SUBTREES {
            let bad = wildcard && (within(&domain, subtree) || within(subtree, &domain));
            assert!(
                !bad,
                "{}: {} (line {}) covers {subtree}",
                app.id, d.pattern, d.line
            );
        }
        for host in FORBIDDEN_HOSTS {
            assert!(
                !covers(&d.pattern, host),
                "{}: {} covers {host}",
                app.id,
                d.pattern
            );
        }
    }
}

#[test]
fn ids_are_unique_sorted_and_looked_up_case_insensitively() {
    let catalog = builtin();
    let ids: Vec<&str> = catalog.apps().iter().map(|a| a.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted);
    assert_eq!(
        catalog.get("Zoom-Meetings").map(|a| a.name.as_str()),
        Some("Zoom Meetings")
    );
    assert!(catalog.get("zoom").is_none());
}

#[test]
fn builtin_lines_point_at_headers_and_patterns() {
    let text = Catalog::builtin_text();
    let lines: Vec<&str> = text.lines().collect();
    for (app, d) in every_pattern(&builtin()) {
        assert_eq!(lines[app.origin.line - 1], "[[app]]", "{}", app.id);
        assert_eq!(
            lines[d.line - 1].trim(),
            format!("\"{}\",", d.pattern),
            "{}",
            app.id
        );
    }
}

#[test]
fn categories_are_a_small_sorted_vocabulary() {
    let catalog = builtin();
    let categories = catalog.categories();
    assert_eq!(
        categories,
        [
            "Analytics",
            "Business Applications",
            "Cloud Infrastructure",
            "Collaboration",
            "Developer Tools",
            "File Sharing",
            "Finance",
            "Gaming",
            "Identity",
            "Messaging",
            "Operating System Services",
            "Productivity",
            "Remote Access",
            "Security",
            "Social",
            "Streaming",
            "Travel",
        ]
    );
}

const EXTRA: &str = r#"
# A site's own additions.
[[app]]
id = "acme-erp"
name = "ACME ERP"
category = "Business Applications"
domains = ["erp.acme.example", "*.api.acme.example"]

[[app]]
id = "dropbox"
name = "Dropbox (tenant only)"
vendor = "Dropbox, Inc."
category = "File Sharing"
pinning = true
domains = ["acme.dropbox.com"]
"#;

#[test]
fn extra_file_parses_with_defaults_and_lines() {
    let apps = Catalog::parse(EXTRA, "/etc/sluice/apps.toml").expect("parses");
    assert_eq!(apps.len(), 2);
    let erp = &apps[0];
    assert_eq!(erp.id, "acme-erp");
    assert_eq!(erp.vendor, "");
    assert!(!erp.global_bypass && !erp.pinning);
    assert_eq!(erp.verified, None);
    assert_eq!(
        erp.origin,
        AppOrigin {
            file: "/etc/sluice/apps.toml".into(),
            line: 3
        }
    );
    let patterns: Vec<(&str, usize)> = erp
        .domains
        .iter()
        .map(|d| (d.pattern.as_str(), d.line))
        .collect();
    assert_eq!(
        patterns,
        [("erp.acme.example", 7), ("*.api.acme.example", 7)]
    );
    assert_eq!(apps[1].origin.line, 9);
    assert_eq!(apps[1].domains[0].line, 15);
}

#[test]
fn merge_replaces_by_id_and_adds_new_ids() {
    let mut catalog = builtin();
    let extra = Catalog::parse(EXTRA, "extra.toml").expect("parses");
    catalog.merge(extra);
    assert_eq!(catalog.apps().len(), 58);

    // Replaced entirely: nothing of the built-in Dropbox row survives.
    let dropbox = catalog.get("dropbox").expect("present");
    assert_eq!(dropbox.name, "Dropbox (tenant only)");
    let patterns: Vec<&str> = dropbox.all_domains().map(|d| d.pattern.as_str()).collect();
    assert_eq!(patterns, ["acme.dropbox.com"]);
    assert!(dropbox.sources.is_empty());
    assert_eq!(dropbox.origin.file, "extra.toml");

    let erp = catalog.get("acme-erp").expect("added");
    assert_eq!(erp.origin.file, "extra.toml");
    let ids: Vec<&str> = catalog.apps().iter().map(|a| a.id.as_str()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "still sorted");

    // Later wins within one merge too.
    let mut twice = Catalog::default();
    let mut second = catalog.get("acme-erp").cloned().expect("present");
    second.name = "second".into();
    twice.merge(vec![
        catalog.get("acme-erp").cloned().expect("present"),
        second,
    ]);
    assert_eq!(twice.apps().len(), 1);
    assert_eq!(twice.apps()[0].name, "second");
}

#[test]
fn all_domains_deduplicates_across_services() {
    let text = r#"
[[app]]
id = "x"
name = "X"
category = "Test"
domains = ["a.example", "*.b.example"]
[[app.service]]
name = "one"
domains = ["A.example", "c.example"]
[[app.service]]
name = "empty"
[[app.service]]
name = "two"
domains = ["*.b.example", "c.example", "d.example"]
"#;
    let apps = Catalog::parse(text, "t.toml").expect("parses");
    let all: Vec<(&str, usize)> = apps[0]
        .all_domains()
        .map(|d| (d.pattern.as_str(), d.line))
        .collect();
    assert_eq!(
        all,
        [
            ("a.example", 6),
            ("*.b.example", 6),
            ("c.example", 9),
            ("d.example", 14)
        ]
    );
    assert_eq!(apps[0].services.len(), 3);
}

#[test]
fn unknown_key_is_rejected_with_key_and_line() {
    let text = "[[app]]\nid = \"x\"\nname = \"X\"\ncategory = \"Test\"\ndomain = [\"x.example\"]\n";
    let err = Catalog::parse(text, "extra.toml").expect_err("unknown key");
    let CatalogError::Toml {
        file,
        line,
        message,
    } = &err
    else {
        panic!("expected a TOML error, got {err:?}");
    };
    assert_eq!((file.as_str(), *line), ("extra.toml", 5));
    assert!(message.contains("unknown field `domain`"), "{message}");
    assert!(err
        .to_string()
        .starts_with("extra.toml:5: unknown field `domain`"));
    assert!(
        !err.to_string().contains("x.example"),
        "no echo of the file"
    );

    // In a service table and at top level too.
    let text = "[[app]]\nid = \"x\"\nname = \"X\"\ncategory = \"T\"\n[[app.service]]\nname = \"s\"\nhosts = []\n";
    let err = Catalog::parse(text, "e.toml").expect_err("unknown key");
    assert!(
        err.to_string()
            .starts_with("e.toml:7: unknown field `hosts`"),
        "{err}"
    );
    let err = Catalog::parse("[[apps]]\nid = \"x\"\n", "e.toml").expect_err("unknown key");
    assert!(
        err.to_string()
            .starts_with("e.toml:1: unknown field `apps`"),
        "{err}"
    );
}

#[test]
fn missing_required_key_is_a_toml_error() {
    let text = "[[app]]\nid = \"x\"\nname = \"X\"\ndomains = [\"x.example\"]\n";
    let err = Catalog::parse(text, "e.toml").expect_err("no category");
    assert!(
        err.to_string().contains("missing field `category`"),
        "{err}"
    );
}

#[test]
fn duplicate_id_is_rejected() {
    let text = r#"[[app]]
id = "x"
name = "X"
category = "T"
domains = ["x.example"]

[[app]]
id = "x"
name = "X again"
category = "T"
domains = ["y.example"]
"#;
    let err = Catalog::parse(text, "dup.toml").expect_err("duplicate");
    assert_eq!(
        err,
        CatalogError::Invalid {
            file: "dup.toml".into(),
            line: 8,
            key: "app[1].id".into(),
            message: "duplicate id `x` (first defined at line 2)".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "dup.toml:8: app[1].id: duplicate id `x` (first defined at line 2)"
    );
}

fn one_app(id: &str, name: &str, domains: &str) -> String {
    format!("[[app]]\nid = \"{id}\"\nname = \"{name}\"\ncategory = \"T\"\ndomains = {domains}\n")
}

#[test]
fn invalid_values_are_rejected_with_their_key() {
    let cases = [
        (one_app("Zoom", "Z", r#"["z.example"]"#), "app[0].id", 2),
        (one_app("a_b", "Z", r#"["z.example"]"#), "app[0].id", 2),
        (one_app("", "Z", r#"["z.example"]"#), "app[0].id", 2),
        (one_app("z", " ", r#"["z.example"]"#), "app[0].name", 3),
        (one_app("z", "Z", "[]"), "app[0]", 1),
        (
            one_app("z", "Z", r#"["ok.example", ""]"#),
            "app[0].domains[1]",
            5,
        ),
        (
            one_app("z", "Z", r#"["bad example.com"]"#),
            "app[0].domains[0]",
            5,
        ),
        (
            one_app("z", "Z", r#"["*example.com"]"#),
            "app[0].domains[0]",
            5,
        ),
        (
            one_app("z", "Z", r#"["a.*.example.com"]"#),
            "app[0].domains[0]",
            5,
        ),
        (
            one_app("z", "Z", r#"["*.*.example.com"]"#),
            "app[0].domains[0]",
            5,
        ),
        (one_app("z", "Z", r#"["*."]"#), "app[0].domains[0]", 5),
        (one_app("z", "Z", r#"["*"]"#), "app[0].domains[0]", 5),
        (
            one_app("z", "Z", r#"["https://example.com/"]"#),
            "app[0].domains[0]",
            5,
        ),
        (
            one_app("z", "Z", r#"["example.com:443"]"#),
            "app[0].domains[0]",
            5,
        ),
    ];
    for (text, key, line) in cases {
        let err = Catalog::parse(&text, "v.toml").expect_err(&text);
        let CatalogError::Invalid {
            key: k, line: l, ..
        } = &err
        else {
            panic!("{text}: expected Invalid, got {err:?}");
        };
        assert_eq!((k.as_str(), *l), (key, line), "{text}");
    }

    let bad_date = format!(
        "{}verified = \"27.11.2026\"\n",
        one_app("z", "Z", r#"["z.example"]"#)
    );
    let err = Catalog::parse(&bad_date, "v.toml").expect_err("bad date");
    assert!(
        err.to_string().starts_with("v.toml:6: app[0].verified:"),
        "{err}"
    );

    let service = "[[app]]\nid = \"z\"\nname = \"Z\"\ncategory = \"T\"\n[[app.service]]\nname = \"s\"\ndomains = [\"ok.example\", \"x y\"]\n";
    let err = Catalog::parse(service, "v.toml").expect_err("bad service pattern");
    assert!(
        err.to_string()
            .starts_with("v.toml:7: app[0].service[0].domains[1]:"),
        "{err}"
    );
}

#[test]
fn unicode_patterns_pass_this_check() {
    // IDNs are converted to punycode by the domain matcher; the catalog only keeps the text.
    let apps = Catalog::parse(
        &one_app("z", "Z", r#"["bücher.example", "*.例え.jp"]"#),
        "u.toml",
    )
    .expect("unicode is allowed here");
    assert_eq!(apps[0].domains[0].pattern, "bücher.example");
}

#[test]
fn check_reports_every_error_in_file_order() {
    let text = format!(
        "{}\n{}",
        one_app("Bad", "", r#"["ok.example"]"#),
        one_app("z", "Z", r#"["a b"]"#)
    );
    let errors = Catalog::check(&text, "c.toml");
    let keys: Vec<String> = errors
        .iter()
        .map(|e| match e {
            CatalogError::Invalid { key, line, .. } => format!("{line}:{key}"),
            CatalogError::Toml { .. } => panic!("unexpected {e:?}"),
        })
        .collect();
    assert_eq!(
        keys,
        ["2:app[0].id", "3:app[0].name", "11:app[1].domains[0]"]
    );
    assert!(Catalog::check(EXTRA, "ok.toml").is_empty());
    assert_eq!(Catalog::check("[[app]", "x.toml").len(), 1);
}

#[test]
fn empty_file_is_an_empty_catalog() {
    assert_eq!(Catalog::parse("", "e.toml").expect("empty is fine"), []);
    assert_eq!(Catalog::parse("# nothing\n", "e.toml").expect("ok"), []);
    assert!(Catalog::default().categories().is_empty());
}
