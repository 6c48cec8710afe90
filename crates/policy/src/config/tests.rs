use super::*;
use crate::name::DomainName;

fn parse(text: &str) -> Result<Config, Vec<ConfigIssue>> {
    Config::from_toml(text, "test.toml", Path::new("/etc/sluice"))
}

#[test]
fn empty_config_is_the_embedded_default() {
    let c = parse("").unwrap();
    assert_eq!(
        c.proxy.listen,
        vec!["127.0.0.1:3128".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        c.admin.listen,
        "127.0.0.1:9128".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.proxy.connect_ports, vec![443]);
    assert_eq!(c.proxy.non_tls, NonTls::Block);
    assert_eq!(c.upstream.allow_private, AllowPrivate::None);
    assert_eq!(c.upstream.hosts_file, Some(PathBuf::from("/etc/hosts")));
    assert_eq!(c.pinning.threshold, 3);
    assert_eq!(c.pinning.quiet_window, Duration::from_secs(2));
    assert_eq!(c.access_log, LogTarget::Stdout);
    assert!(c.policies.is_empty());
}

#[test]
fn unknown_key_is_rejected_with_path_and_line() {
    let err = parse("[proxy]\nlisten = [\"127.0.0.1:1\"]\nbogus = 1\n").unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].line, Some(3));
    assert!(err[0].message.contains("bogus"), "{:?}", err[0]);
    for table in [
        "ca", "admin", "log", "upstream", "auth", "catalog", "pinning", "inspect",
    ] {
        let err = parse(&format!("[{table}]\nnope = 1\n")).unwrap_err();
        assert!(err[0].message.contains("nope"), "{table}: {:?}", err[0]);
    }
    let err = parse("[[policy]]\nname = \"default\"\nbypass = { domainz = [] }\n").unwrap_err();
    assert!(err[0].key.contains("policy"), "{:?}", err[0]);
}

#[test]
fn every_semantic_error_is_reported() {
    let text = "[proxy]\nlisten = [\"nope\"]\nnon_tls = \"maybe\"\n[pinning]\nwindow = \"ten\"\n\
                [[policy]]\nname = \"default\"\nbypass = { domains = [\"*.com\", \"ok.example\"] }\n";
    let err = parse(text).unwrap_err();
    let keys: Vec<_> = err.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert!(keys.contains(&("proxy.listen[0]", Some(2))), "{err:?}");
    assert!(keys.contains(&("proxy.non_tls", Some(3))), "{err:?}");
    assert!(keys.contains(&("pinning.window", Some(5))), "{err:?}");
    assert!(
        keys.contains(&("policy[0].bypass.domains[0]", Some(8))),
        "{err:?}"
    );
    assert_eq!(err.len(), 4, "{err:?}");
}

#[test]
fn policies_keep_provenance_and_accountability() {
    let text = r#"
[[policy]]
name = "default"
match = { networks = ["10.0.0.0/8", "::/0"], users = ["alice"] }
bypass = { domains = ["*.bank.example", { value = "pay.example", owner = "it", note = "vendor pins", expires = "2030-01-31" }], apps = ["Dropbox"] }
block = { domains = ["bad.example"], categories = ["Gambling"] }
"#;
    let c = parse(text).unwrap();
    let p = &c.policies[0];
    assert_eq!(p.origin.line, 2);
    assert_eq!(p.networks.len(), 2);
    assert_eq!(p.bypass.domains.len(), 2);
    assert_eq!(p.bypass.domains[0].origin.line, 5);
    assert_eq!(p.bypass.domains[1].owner.as_deref(), Some("it"));
    assert_eq!(p.bypass.domains[1].expires, parse_expiry("2030-01-31"));
    assert_eq!(p.bypass.apps[0].value, "dropbox");
    assert_eq!(p.block.categories[0].value, "gambling");
}

#[test]
fn allow_private_accepts_bool_and_cidrs() {
    assert_eq!(
        parse("[upstream]\nallow_private = true\n")
            .unwrap()
            .upstream
            .allow_private,
        AllowPrivate::All
    );
    let c = parse("[upstream]\nallow_private = [\"127.0.1.0/24\"]\n").unwrap();
    assert!(matches!(c.upstream.allow_private, AllowPrivate::Nets(ref n) if n.len() == 1));
    assert!(parse("[upstream]\nallow_private = [\"nope\"]\n").is_err());
}

#[test]
fn block_only_keys_are_refused_under_bypass() {
    let err = parse("[[policy]]\nname = \"default\"\nbypass = { urls = [\"a.example/x\"] }\n")
        .unwrap_err();
    assert_eq!(err[0].key, "policy[0].bypass.urls");
}

#[test]
fn duplicate_policy_names_are_errors() {
    let err = parse("[[policy]]\nname = \"a\"\n[[policy]]\nname = \"a\"\n").unwrap_err();
    assert_eq!(err[0].line, Some(4));
}

#[test]
fn sizes_and_dates() {
    assert_eq!(parse_size("64KiB"), Some(65536));
    assert_eq!(parse_size("16MiB"), Some(16 << 20));
    assert_eq!(parse_size("12 parsecs"), None);
    assert_eq!(parse_expiry("1970-01-01"), Some(86_399));
    assert_eq!(parse_expiry("2024-03-01"), Some(1_709_337_599));
    assert_eq!(parse_expiry("2024-13-01"), None);
    assert_eq!(parse_expiry("2030-02-31"), None);
    assert_eq!(parse_expiry("2030-04-31"), None);
    assert_eq!(parse_expiry("2100-02-29"), None);
    assert!(parse_expiry("2028-02-29").is_some());
    assert!(parse_expiry("2000-02-29").is_some());
    // Found by the `config` fuzz target: a huge year overflowed the day arithmetic.
    assert_eq!(
        parse_expiry("0000000000000000003696222810255917069-06-30"),
        None
    );
    assert_eq!(parse_expiry("10000-01-01"), None);
    assert_eq!(parse_expiry("9999-12-31"), Some(253_402_300_799));
}

/// Out-of-range years and timestamps used to overflow the date arithmetic
/// (fuzz/regressions/config/expires-*.toml).
#[test]
fn expiry_is_bounded_to_four_digit_years() {
    assert_eq!(parse_expiry("0000-01-01"), Some(-62_167_219_200 + 86_399));
    assert_eq!(parse_expiry("9999-12-31"), Some(253_402_300_799));
    assert_eq!(parse_expiry("10000-01-01"), None);
    assert_eq!(parse_expiry("3696222810255917069-06-30"), None);
    assert_eq!(parse_expiry("253402300799"), Some(253_402_300_799));
    assert_eq!(parse_expiry("253402300800"), None);
    assert_eq!(parse_expiry("-62167219200"), Some(-62_167_219_200));
    assert_eq!(parse_expiry("-62167219201"), None);
    assert_eq!(parse_expiry("9223372036854775807"), None);
    // Rendering the extremes back to JSON stays in range.
    for expires in ["0000-01-01", "9999-12-31", "253402300799", "-62167219200"] {
        let toml = format!(
            "[[policy]]\nname = \"default\"\nbypass = {{ domains = [{{ value = \"a.example\", expires = \"{expires}\" }}] }}\n"
        );
        let c = parse(&toml).unwrap();
        let _ = policies_to_json(&c.policies);
    }
    let issues = parse(
        "[[policy]]\nname = \"default\"\nbypass = { domains = [{ value = \"a.example\", expires = \"3696222810255917069-06-30\" }] }\n",
    )
    .unwrap_err();
    assert!(
        issues
            .iter()
            .any(|i| i.to_string().contains("is not a date")),
        "{issues:?}"
    );
}

#[test]
fn inspect_settings_are_validated() {
    let c = parse("").unwrap();
    assert_eq!(c.inspect.icap, None);
    assert_eq!(c.inspect.fail, FailMode::Closed);
    assert_eq!(c.inspect.max_scan_size, 16 << 20);
    assert_eq!(c.inspect.oversize, FailMode::Open);
    let c = parse("[inspect]\nicap = \"icap://127.0.0.1:1344/avscan\"\nfail = \"open\"\nmax_scan_size = \"1MiB\"\noversize = \"block\"\n").unwrap();
    assert_eq!(
        c.inspect.icap.as_deref(),
        Some("icap://127.0.0.1:1344/avscan")
    );
    assert_eq!(
        (c.inspect.fail, c.inspect.oversize, c.inspect.max_scan_size),
        (FailMode::Open, FailMode::Closed, 1 << 20)
    );
    let err = parse("[inspect]\nicap = \"http://x\"\nfail = \"maybe\"\n").unwrap_err();
    assert_eq!(err.len(), 2, "{err:?}");
}

#[test]
fn log_fail_mode_is_validated_with_key_and_line() {
    assert_eq!(parse("").unwrap().log_fail, LogFail::Open);
    let c = parse("[log]\naccess = \"access.log\"\nfail = \"closed\"\n").unwrap();
    assert_eq!(c.log_fail, LogFail::Closed);
    assert_eq!(
        c.access_log,
        LogTarget::File(PathBuf::from("/etc/sluice/access.log"))
    );
    assert_eq!(
        parse("[log]\nfail = \"open\"\n").unwrap().log_fail,
        LogFail::Open
    );
    let err = parse("[log]\naccess = \"-\"\nfail = \"strict\"\n").unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!((err[0].key.as_str(), err[0].line), ("log.fail", Some(3)));
    assert!(err[0].message.contains("\"closed\""), "{err:?}");
}

// === JSON policy lists (admin API, policy.json) ===

fn json_policies(v: serde_json::Value) -> Result<JsonPolicies, Vec<ConfigIssue>> {
    policies_from_json(&v, "/data/policy.json", Path::new("/etc/sluice"))
}

#[test]
fn json_policies_use_the_config_rules_and_key_paths() {
    let ok = json_policies(serde_json::json!([{
        "name": "default",
        "match": {"networks": ["10.0.0.0/8"], "users": []},
        "bypass": {"domains": ["*.bank.example", {"value": "pay.example", "owner": "it", "expires": "2030-01-31"}]},
        "block": {"domains": ["bad.example"], "apps": ["Dropbox"]}
    }]))
    .unwrap();
    let p = &ok.policies[0];
    assert_eq!(p.block.apps[0].value, "dropbox");
    assert_eq!(
        p.bypass.domains[1].origin.to_string(),
        "/data/policy.json policies[0].bypass.domains[1]"
    );
    for (bad, key) in [
        (serde_json::json!("x"), "policies"),
        (serde_json::json!([1]), "policies[0]"),
        (
            serde_json::json!([{"name": "a", "bypass": {"domains": ["ok.example", "", "*"]}}]),
            "policies[0].bypass.domains[1]",
        ),
        (
            serde_json::json!([{"name": "a", "bypass": {"domains": ["a..example"]}}]),
            "policies[0].bypass.domains[0]",
        ),
        (
            serde_json::json!([{"name": "a", "bypass": {"domains": ["*.co.uk"]}}]),
            "policies[0].bypass.domains[0]",
        ),
        (
            serde_json::json!([{"name": "a", "bypass": {"domains": [format!("{}.example", "a".repeat(300))]}}]),
            "policies[0].bypass.domains[0]",
        ),
        (
            serde_json::json!([{"name": "a", "bypass": {"domainz": []}}]),
            "policies[0].bypass",
        ),
        (
            serde_json::json!([{"name": "a", "decrypt": null}]),
            "policies[0].decrypt",
        ),
        (
            serde_json::json!([{"name": "a"}, {"name": "a"}]),
            "policies[1].name",
        ),
        (
            serde_json::json!([{"name": "a", "bypass": {"urls": ["/x"]}}]),
            "policies[0].bypass.urls",
        ),
    ] {
        let err = json_policies(bad.clone()).unwrap_err();
        assert!(err.iter().any(|i| i.key.starts_with(key)), "{bad}: {err:?}");
        assert!(err.iter().all(|i| i.line.is_none()), "{err:?}");
    }
    let err = json_policies(serde_json::json!([{"name": "a", "bypass": {"domains": ["*"]}}]))
        .unwrap_err();
    assert_eq!(err[0].key, "policies[0].bypass.domains[0]", "{err:?}");
    let err = json_policies(serde_json::json!([{"name": "a", "bogus": 1}])).unwrap_err();
    assert!(err[0].message.contains("bogus"), "{err:?}");
}

#[test]
fn json_round_trip_keeps_the_hash() {
    let text = "[[policy]]\nname = \"default\"\npinning = \"learn\"\n\
                bypass = { domains = [\"*.Bank.example\"], apps = [\"dropbox\"], owner = \"it\", expires = \"2031-02-28\" }\n\
                block = { domains = [\"bad.example\"], urls = [\"/x\"], file_types = [\"exe\"] }\n";
    let config = parse(text).unwrap();
    let json = policies_to_json(&config.policies);
    let back = json_policies(json.clone()).unwrap();
    assert_eq!(policies_to_json(&back.policies), json);
    assert_eq!(policy_hash(&back.policies), policy_hash(&config.policies));
    assert_eq!(json[0]["bypass"]["domains"][0]["expires"], "2031-02-28");
    assert_eq!(json[0]["bypass"]["domains"][0]["value"], "*.bank.example");
    assert_ne!(policy_hash(&[]), policy_hash(&config.policies));
}

#[test]
fn policy_file_replaces_the_tables_and_a_bad_one_is_an_error_naming_it() {
    let dir = std::env::temp_dir().join(format!("sluice-policy-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(POLICY_FILE);
    let _ = std::fs::remove_file(&path);
    let mut config = parse("[[policy]]\nname = \"default\"\n").unwrap();
    assert!(!config.apply_policy_file(&path).unwrap());
    assert!(config.policy_override.is_none());
    std::fs::write(&path, r#"{"policies": [{"name": "api"}]}"#).unwrap();
    assert!(config.apply_policy_file(&path).unwrap());
    assert_eq!(config.policies[0].name, "api");
    assert_eq!(config.policy_override.as_deref(), Some(path.as_path()));
    for bad in [
        "{\"policies\": [",
        "{\"policies\": [], \"x\": 1}",
        "{\"policies\": []} x",
    ] {
        std::fs::write(&path, bad).unwrap();
        let err = config.apply_policy_file(&path).unwrap_err();
        assert!(!err.is_empty(), "{bad}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dns_servers_and_timeout_default_to_the_system_resolver() {
    let c = parse("").unwrap();
    assert!(c.upstream.dns_servers.is_empty());
    assert_eq!(c.upstream.dns_timeout, Duration::from_secs(5));
}

#[test]
fn dns_servers_take_ip_or_ip_port() {
    let text = "[upstream]\ndns_servers = [\"192.0.2.53\", \"127.0.0.1:5353\", \"::1\", \"[2001:db8::53]:5300\"]\ndns_timeout = \"1500ms\"\n";
    let c = parse(text).unwrap();
    let want: Vec<SocketAddr> = [
        "192.0.2.53:53",
        "127.0.0.1:5353",
        "[::1]:53",
        "[2001:db8::53]:5300",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    assert_eq!(c.upstream.dns_servers, want);
    assert_eq!(c.upstream.dns_timeout, Duration::from_millis(1500));
}

#[test]
fn bad_dns_settings_name_key_and_line() {
    let text = "[upstream]\ndns_servers = [\n  \"127.0.0.1:5353\",\n  \"dns.example\",\n  \"127.0.0.1:0\",\n  \"0.0.0.0\",\n  \"1.2.3.4:99999\",\n]\ndns_timeout = \"soon\"\n";
    let err = parse(text).unwrap_err();
    let keys: Vec<_> = err.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert_eq!(
        keys,
        vec![
            ("upstream.dns_servers[1]", Some(4)),
            ("upstream.dns_servers[2]", Some(5)),
            ("upstream.dns_servers[3]", Some(6)),
            ("upstream.dns_servers[4]", Some(7)),
            ("upstream.dns_timeout", Some(9)),
        ],
        "{err:?}"
    );
    assert!(err[0].message.contains("dns.example"), "{:?}", err[0]);
    let err = parse("[upstream]\ndns_timeout = \"0s\"\n").unwrap_err();
    assert_eq!(err[0].key, "upstream.dns_timeout");
    assert!(err[0].message.contains("greater than zero"), "{:?}", err[0]);
    let err = parse("[upstream]\ndns_servers = \"127.0.0.1\"\n").unwrap_err();
    assert!(err[0].key.contains("dns_servers"), "{:?}", err[0]);
    assert_eq!(err[0].line, Some(2), "{:?}", err[0]);
}

#[test]
fn log_mode_is_0600_or_0640_and_errors_name_the_key() {
    assert_eq!(parse("").unwrap().log_mode, 0o600);
    for (text, mode) in [
        ("0600", 0o600),
        ("0640", 0o640),
        ("640", 0o640),
        ("0o640", 0o640),
    ] {
        let c = parse(&format!("[log]\nmode = \"{text}\"\n")).unwrap();
        assert_eq!(c.log_mode, mode, "{text}");
    }
    for bad in [
        "0644", "0660", "0666", "0700", "0400", "4600", "01600", "", "rw", "0x1a0",
    ] {
        let err = parse(&format!("[log]\nmode = \"{bad}\"\n")).unwrap_err();
        assert_eq!(err[0].key, "log.mode", "{bad}");
        assert_eq!(err[0].line, Some(2), "{bad}");
    }
}

#[test]
fn admin_tls_names_are_ips_and_host_names() {
    assert!(parse("").unwrap().admin.tls_names.is_none());
    let c = parse(
        "[admin]\ntls_names = [\"Admin.Example.\", \"192.0.2.1\", \"::1\", \"admin.example\"]\n",
    )
    .unwrap();
    let names = c.admin.tls_names.unwrap();
    assert_eq!(names.len(), 3, "normalised and deduplicated: {names:?}");
    assert_eq!(
        names[0].as_domain().map(DomainName::as_str),
        Some("admin.example")
    );
    for bad in ["*.example.com", "0.0.0.0", "a b", "exa_mple..com"] {
        let err = parse(&format!("[admin]\ntls_names = [\"{bad}\"]\n")).unwrap_err();
        assert_eq!(err[0].key, "admin.tls_names[0]", "{bad}");
    }
    let err = parse("[admin]\ntls_names = []\n").unwrap_err();
    assert_eq!(err[0].key, "admin.tls_names");
}
