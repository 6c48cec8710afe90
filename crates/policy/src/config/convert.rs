//! Raw → typed conversion of each table, collecting every issue.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::raw::{RawAllowPrivate, RawConfig, RawEntry, RawList, RawPolicy, S};
use super::{
    parse_expiry, AdminConfig, AllowPrivate, CaConfig, Config, Cx, Entry, FailMode, InspectConfig,
    LearnScope, LogFail, LogTarget, NonTls, Origin, PinningConfig, PinningMode, PolicyConfig,
    ProxyConfig, RuleLists, Timeouts, UpstreamConfig,
};
use crate::domain::Pattern;
use crate::name::{DomainName, Host};

const DEFAULT_PROXY: &str = "127.0.0.1:3128";
const DEFAULT_ADMIN: &str = "127.0.0.1:9128";
/// Most names in `admin.tls_names`.
const MAX_TLS_NAMES: usize = 64;

impl Cx<'_> {
    pub(super) fn config(&mut self, raw: RawConfig) -> Config {
        let proxy = self.proxy(&raw);
        let pinning = self.pinning(&raw);
        let policies = raw
            .policy
            .iter()
            .enumerate()
            .map(|(i, p)| self.policy(i, p))
            .collect::<Vec<_>>();
        self.check_policy_names(&policies, &raw.policy);
        Config {
            proxy,
            ca: self.ca(&raw),
            admin: self.admin(&raw),
            access_log: match &raw.log.access {
                None => LogTarget::Stdout,
                Some(v) if v.get_ref() == "-" => LogTarget::Stdout,
                Some(v) if v.get_ref().is_empty() => {
                    self.error("log.access", v, "must be \"-\" (stdout) or a file path");
                    LogTarget::Stdout
                }
                Some(v) => LogTarget::File(self.path(v.get_ref())),
            },
            log_fail: self.choice(
                "log.fail",
                &raw.log.fail,
                &[("open", LogFail::Open), ("closed", LogFail::Closed)],
                LogFail::Open,
            ),
            log_mode: self.log_mode(&raw.log.mode),
            upstream: self.upstream(&raw),
            htpasswd: opt_path(self, &raw.auth.htpasswd),
            auth_realm: raw
                .auth
                .realm
                .as_ref()
                .map_or_else(|| "sluice".into(), |r| r.get_ref().clone()),
            catalog_extra: paths(self, &raw.catalog.extra),
            category_lists: paths(self, &raw.catalog.category_lists),
            pinning,
            policies,
            inspect: self.inspect(&raw),
            warnings: vec![],
            source: None,
            policy_override: None,
        }
    }

    fn proxy(&mut self, raw: &RawConfig) -> ProxyConfig {
        let p = &raw.proxy;
        let listen = match &p.listen {
            None => vec![DEFAULT_PROXY
                .parse::<SocketAddr>()
                .unwrap_or_else(|_| unreachable!())],
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, v)| self.socket(&format!("proxy.listen[{i}]"), v))
                .collect(),
        };
        if p.listen.as_ref().is_some_and(|l| l.is_empty()) {
            self.issues.push(super::ConfigIssue {
                key: "proxy.listen".into(),
                line: None,
                message: "needs at least one address".into(),
            });
        }
        let connect_ports = match &p.connect_ports {
            None => vec![443],
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let n = self.count(
                        &format!("proxy.connect_ports[{i}]"),
                        &Some(v.clone()),
                        1,
                        65535,
                        0,
                    );
                    u16::try_from(n).ok().filter(|&n| n != 0)
                })
                .collect(),
        };
        let t = &p.timeouts;
        ProxyConfig {
            listen,
            connect_ports,
            non_tls: self.choice(
                "proxy.non_tls",
                &p.non_tls,
                &[("block", NonTls::Block), ("tunnel", NonTls::Tunnel)],
                NonTls::Block,
            ),
            max_client_hello: self.size("proxy.max_client_hello", &p.max_client_hello, 64 * 1024),
            max_connections: usize::try_from(self.count(
                "proxy.max_connections",
                &p.max_connections,
                1,
                1_000_000,
                20_000,
            ))
            .unwrap_or(20_000),
            timeouts: Timeouts {
                header: self.duration("proxy.timeouts.header", &t.header, Duration::from_secs(30)),
                client_hello: self.duration(
                    "proxy.timeouts.client_hello",
                    &t.client_hello,
                    Duration::from_secs(10),
                ),
                connect: self.duration(
                    "proxy.timeouts.connect",
                    &t.connect,
                    Duration::from_secs(10),
                ),
                handshake: self.duration(
                    "proxy.timeouts.handshake",
                    &t.handshake,
                    Duration::from_secs(10),
                ),
                idle: self.duration("proxy.timeouts.idle", &t.idle, Duration::from_secs(300)),
                shutdown_grace: self.duration(
                    "proxy.timeouts.shutdown_grace",
                    &t.shutdown_grace,
                    Duration::from_secs(10),
                ),
            },
        }
    }

    fn ca(&mut self, raw: &RawConfig) -> CaConfig {
        let cert = opt_path(self, &raw.ca.cert);
        let key = opt_path(self, &raw.ca.key);
        match (&raw.ca.cert, &raw.ca.key, &cert, &key) {
            (Some(v), _, Some(_), None) => {
                self.error("ca.key", v, "ca.cert is set, so ca.key must be set too")
            }
            (_, Some(v), None, Some(_)) => {
                self.error("ca.cert", v, "ca.key is set, so ca.cert must be set too")
            }
            _ => {}
        }
        let leaf_cache = self.count("ca.leaf_cache", &raw.ca.leaf_cache, 16, 10_000_000, 10_000);
        CaConfig {
            cert,
            key,
            leaf_cache: usize::try_from(leaf_cache).unwrap_or(10_000),
        }
    }

    fn admin(&mut self, raw: &RawConfig) -> AdminConfig {
        let listen = raw
            .admin
            .listen
            .as_ref()
            .and_then(|v| self.socket("admin.listen", v))
            .unwrap_or_else(|| DEFAULT_ADMIN.parse().unwrap_or_else(|_| unreachable!()));
        AdminConfig {
            listen,
            token_file: opt_path(self, &raw.admin.token_file),
            pac_direct: raw
                .admin
                .pac_direct
                .iter()
                .flatten()
                .map(|v| v.get_ref().clone())
                .collect(),
            tls_names: self.tls_names(&raw.admin.tls_names),
        }
    }

    /// `admin.tls_names`: IP literals and DNS names (no wildcards: the admin certificate
    /// names the hosts it serves), at least one, at most [`MAX_TLS_NAMES`].
    fn tls_names(&mut self, raw: &Option<Vec<S<String>>>) -> Option<Vec<Host>> {
        let list = raw.as_ref()?;
        if list.is_empty() || list.len() > MAX_TLS_NAMES {
            self.issues.push(super::ConfigIssue {
                key: "admin.tls_names".into(),
                line: None,
                message: format!(
                    "needs 1 to {MAX_TLS_NAMES} names (leave it out for the defaults)"
                ),
            });
        }
        let mut names = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let text = v.get_ref().trim();
            let parsed = match text.parse::<IpAddr>() {
                Ok(ip) if ip.is_unspecified() => Err("an unspecified address names no host".into()),
                Ok(ip) => Ok(Host::Ip(ip)),
                Err(_) => DomainName::parse(text)
                    .map(Host::Domain)
                    .map_err(|e| e.to_string()),
            };
            match parsed {
                Ok(h) if !names.contains(&h) => names.push(h),
                Ok(_) => {}
                Err(why) => self.error(
                    format!("admin.tls_names[{i}]"),
                    v,
                    format!("`{text}` is not an IP address or a host name: {why}"),
                ),
            }
        }
        Some(names)
    }

    /// `log.mode`: an octal string, `"0600"` (default) or `"0640"`. The owner must read and
    /// write (sluice repairs a torn tail and reopens after logrotate); a group may read; write
    /// for the group, anything for others, execute and special bits are refused: these files
    /// hold decrypted URLs and who did what.
    fn log_mode(&mut self, raw: &Option<S<String>>) -> u32 {
        const DEFAULT: u32 = 0o600;
        let Some(v) = raw else { return DEFAULT };
        let text = v.get_ref().trim();
        let digits = text.strip_prefix("0o").unwrap_or(text);
        let parsed = (!digits.is_empty() && digits.len() <= 4)
            .then(|| u32::from_str_radix(digits, 8).ok())
            .flatten();
        match parsed {
            Some(mode) if mode & !0o640 == 0 && mode & 0o600 == 0o600 => mode,
            Some(mode) => {
                self.error(
                    "log.mode",
                    v,
                    format!(
                        "`{text}` ({mode:04o}) is not allowed: use \"0600\" (default) or \"0640\" \
                         (group may read); the logs hold decrypted URLs, so other users get no \
                         access and nobody but sluice writes"
                    ),
                );
                DEFAULT
            }
            None => {
                self.error(
                    "log.mode",
                    v,
                    format!("`{text}` is not an octal file mode such as \"0600\" or \"0640\""),
                );
                DEFAULT
            }
        }
    }

    fn upstream(&mut self, raw: &RawConfig) -> UpstreamConfig {
        let u = &raw.upstream;
        let allow_private = match &u.allow_private {
            None => AllowPrivate::None,
            Some(v) => match v.get_ref() {
                RawAllowPrivate::All(true) => AllowPrivate::All,
                RawAllowPrivate::All(false) => AllowPrivate::None,
                RawAllowPrivate::Nets(nets) => {
                    let nets = nets
                        .iter()
                        .enumerate()
                        .filter_map(|(i, n)| {
                            let spanned = S::new(v.span(), n.clone());
                            self.net(&format!("upstream.allow_private[{i}]"), &spanned)
                        })
                        .collect();
                    AllowPrivate::Nets(nets)
                }
            },
        };
        let hosts_file = match &u.hosts_file {
            None => Some("/etc/hosts".into()),
            Some(v) if v.get_ref().is_empty() => None,
            Some(v) => Some(self.path(v.get_ref())),
        };
        let dns_servers = u
            .dns_servers
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, v)| self.dns_server(&format!("upstream.dns_servers[{i}]"), v))
            .collect();
        UpstreamConfig {
            extra_roots: paths(self, &u.extra_roots),
            crls: paths(self, &u.crls),
            hosts_file,
            allow_private,
            dns_servers,
            dns_timeout: self.duration(
                "upstream.dns_timeout",
                &u.dns_timeout,
                Duration::from_secs(5),
            ),
        }
    }

    /// `"IP"` or `"IP:PORT"` (`"[v6]:PORT"`), port 53 by default. Names are refused: the
    /// resolver's own address cannot depend on resolution.
    fn dns_server(&mut self, key: &str, v: &S<String>) -> Option<SocketAddr> {
        let s = v.get_ref().trim();
        let parsed = s
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Some(a) if a.port() != 0 && !a.ip().is_unspecified() => Some(a),
            Some(a) => {
                self.error(
                    key,
                    v,
                    format!("`{a}` cannot be a DNS server (unspecified address or port 0)"),
                );
                None
            }
            None => {
                self.error(
                    key,
                    v,
                    format!(
                        "`{s}` is not an IP address or IP:PORT such as \"192.0.2.53\", \
                         \"127.0.0.1:5353\" or \"[2001:db8::53]:53\""
                    ),
                );
                None
            }
        }
    }

    fn inspect(&mut self, raw: &RawConfig) -> InspectConfig {
        let i = &raw.inspect;
        let icap = match &i.icap {
            Some(v) if v.get_ref().is_empty() => None,
            Some(v) => {
                let url = v.get_ref();
                let ok = url.strip_prefix("icap://").is_some_and(|rest| {
                    let (authority, _) = rest.split_once('/').unwrap_or((rest, ""));
                    authority
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                });
                if !ok {
                    self.error(
                        "inspect.icap",
                        v,
                        format!(
                            "`{url}` is not an ICAP URL such as \"icap://127.0.0.1:1344/avscan\""
                        ),
                    );
                }
                Some(url.clone())
            }
            None => None,
        };
        let modes = [("closed", FailMode::Closed), ("open", FailMode::Open)];
        let oversize = [("allow", FailMode::Open), ("block", FailMode::Closed)];
        InspectConfig {
            icap,
            icap_timeout: self.duration(
                "inspect.icap_timeout",
                &i.icap_timeout,
                Duration::from_secs(15),
            ),
            fail: self.choice("inspect.fail", &i.fail, &modes, FailMode::Closed),
            max_scan_size: self.size("inspect.max_scan_size", &i.max_scan_size, 16 << 20),
            oversize: self.choice("inspect.oversize", &i.oversize, &oversize, FailMode::Open),
        }
    }

    fn pinning(&mut self, raw: &RawConfig) -> PinningConfig {
        let p = &raw.pinning;
        PinningConfig {
            mode: self
                .pinning_mode("pinning.mode", &p.mode)
                .unwrap_or(PinningMode::Report),
            quiet_window: self.duration(
                "pinning.quiet_window",
                &p.quiet_window,
                Duration::from_secs(2),
            ),
            threshold: u32::try_from(self.count("pinning.threshold", &p.threshold, 1, 1000, 3))
                .unwrap_or(3),
            window: self.duration("pinning.window", &p.window, Duration::from_secs(600)),
            learned_ttl: self.duration(
                "pinning.learned_ttl",
                &p.learned_ttl,
                Duration::from_secs(7 * 86_400),
            ),
            scope: self.choice(
                "pinning.scope",
                &p.scope,
                &[
                    ("fingerprint", LearnScope::Fingerprint),
                    ("host", LearnScope::Host),
                ],
                LearnScope::Fingerprint,
            ),
            retention: self.duration(
                "pinning.retention",
                &p.retention,
                Duration::from_secs(30 * 86_400),
            ),
            max_observations: u64::try_from(self.count(
                "pinning.max_observations",
                &p.max_observations,
                1_000,
                100_000_000,
                100_000,
            ))
            .unwrap_or(100_000),
        }
    }

    fn pinning_mode(&mut self, key: &str, v: &Option<S<String>>) -> Option<PinningMode> {
        v.as_ref()?;
        let modes = [
            ("report", PinningMode::Report),
            ("learn", PinningMode::Learn),
            ("off", PinningMode::Off),
        ];
        Some(self.choice(key, v, &modes, PinningMode::Report))
    }

    fn policy(&mut self, i: usize, spanned: &S<RawPolicy>) -> PolicyConfig {
        let p = spanned.get_ref();
        let key = format!("policy[{i}]");
        let name = match &p.name {
            Some(n) if !n.get_ref().trim().is_empty() => n.get_ref().clone(),
            Some(n) => {
                self.error(format!("{key}.name"), n, "must not be empty");
                String::new()
            }
            None => {
                self.error(
                    format!("{key}.name"),
                    spanned,
                    "every [[policy]] needs a name",
                );
                String::new()
            }
        };
        let networks = p
            .matches
            .networks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(j, v)| self.net(&format!("{key}.match.networks[{j}]"), v))
            .collect();
        let users = p
            .matches
            .users
            .iter()
            .flatten()
            .map(|u| u.get_ref().clone())
            .collect();
        let bypass = self.lists(&format!("{key}.bypass"), &p.bypass, false);
        let block = self.lists(&format!("{key}.block"), &p.block, true);
        PolicyConfig {
            name,
            origin: Origin {
                file: self.file.clone(),
                line: self.line(spanned),
            },
            networks,
            users,
            decrypt: p.decrypt.unwrap_or(true),
            global_bypass: p.global_bypass.unwrap_or(true),
            pinning: self.pinning_mode(&format!("{key}.pinning"), &p.pinning),
            bypass,
            block,
        }
    }

    fn check_policy_names(&mut self, policies: &[PolicyConfig], raw: &[S<RawPolicy>]) {
        for (i, p) in policies.iter().enumerate() {
            if !p.name.is_empty() && policies[..i].iter().any(|q| q.name == p.name) {
                let at = raw[i]
                    .get_ref()
                    .name
                    .as_ref()
                    .map_or_else(|| raw[i].span(), |n| n.span());
                self.error(
                    format!("policy[{i}].name"),
                    &S::new(at, ()),
                    format!("policy name `{}` is used twice", p.name),
                );
            }
        }
    }

    fn lists(&mut self, key: &str, raw: &RawList, block: bool) -> RuleLists {
        let table = (
            raw.owner.clone(),
            raw.note.clone(),
            raw.expires
                .as_ref()
                .and_then(|e| self.expiry(&format!("{key}.expires"), e.get_ref(), e)),
        );
        let mut lists = RuleLists::default();
        for (j, v) in raw.domains.iter().enumerate() {
            let k = format!("{key}.domains[{j}]");
            if let Some(entry) = self.entry(&k, v, &table) {
                match Pattern::parse(&entry.text) {
                    Ok(p) => {
                        if let Some(w) = p.warning() {
                            self.warn(k, v, w);
                        }
                        lists.domains.push(entry.with(p));
                    }
                    Err(e) => self.error(k, v, format!("`{}`: {e}", entry.text)),
                }
            }
        }
        lists.apps = self.plain_list(&format!("{key}.apps"), &raw.apps, &table, |s| {
            s.to_ascii_lowercase()
        });
        lists.categories =
            self.plain_list(&format!("{key}.categories"), &raw.categories, &table, |s| {
                s.to_ascii_lowercase()
            });
        let block_only = [
            ("urls", &raw.urls),
            ("file_types", &raw.file_types),
            ("hashes", &raw.hashes),
        ];
        for (name, list) in block_only {
            if !block {
                if let Some(first) = list.first() {
                    self.error(
                        format!("{key}.{name}"),
                        first,
                        format!("`{name}` is only valid under `block`"),
                    );
                }
            }
        }
        lists.urls = self.plain_list(&format!("{key}.urls"), &raw.urls, &table, str::to_string);
        lists.file_types =
            self.plain_list(&format!("{key}.file_types"), &raw.file_types, &table, |s| {
                s.to_ascii_lowercase()
            });
        lists.hashes = self
            .plain_list(
                &format!("{key}.hashes"),
                &raw.hashes,
                &table,
                str::to_string,
            )
            .into_iter()
            .map(|e| {
                let p = self.path(&e.value);
                e.with(p)
            })
            .collect();
        lists
    }

    fn plain_list(
        &mut self,
        key: &str,
        raw: &[S<RawEntry>],
        table: &(Option<String>, Option<String>, Option<i64>),
        f: impl Fn(&str) -> String,
    ) -> Vec<Entry<String>> {
        raw.iter()
            .enumerate()
            .filter_map(|(j, v)| {
                let e = self.entry(&format!("{key}[{j}]"), v, table)?;
                let value = f(&e.text);
                Some(e.with(value))
            })
            .collect()
    }

    fn entry(
        &mut self,
        key: &str,
        v: &S<RawEntry>,
        table: &(Option<String>, Option<String>, Option<i64>),
    ) -> Option<Entry<()>> {
        let (text, owner, note, expires) = match v.get_ref() {
            RawEntry::Plain(s) => (s.clone(), None, None, None),
            RawEntry::Detailed(d) => {
                let exp = match &d.expires {
                    Some(e) => Some(self.expiry(&format!("{key}.expires"), e, v)?),
                    None => None,
                };
                (d.value.clone(), d.owner.clone(), d.note.clone(), exp)
            }
        };
        if text.trim().is_empty() {
            self.error(key, v, "must not be empty");
            return None;
        }
        Some(Entry {
            value: (),
            text,
            origin: Origin {
                file: self.file.clone(),
                line: self.line(v),
            },
            owner: owner.or_else(|| table.0.clone()),
            note: note.or_else(|| table.1.clone()),
            expires: expires.or(table.2),
        })
    }

    fn expiry<T>(&mut self, key: &str, s: &str, at: &S<T>) -> Option<i64> {
        let parsed = parse_expiry(s);
        if parsed.is_none() {
            self.error(key, at, format!("`{s}` is not a date (YYYY-MM-DD)"));
        }
        parsed
    }
}

impl<T> Entry<T> {
    fn with<U>(self, value: U) -> Entry<U> {
        Entry {
            value,
            text: self.text,
            origin: self.origin,
            owner: self.owner,
            note: self.note,
            expires: self.expires,
        }
    }
}

fn opt_path(cx: &mut Cx<'_>, v: &Option<S<String>>) -> Option<std::path::PathBuf> {
    v.as_ref()
        .filter(|s| !s.get_ref().is_empty())
        .map(|s| cx.path(s.get_ref()))
}

fn paths(cx: &mut Cx<'_>, v: &Option<Vec<S<String>>>) -> Vec<std::path::PathBuf> {
    v.iter()
        .flatten()
        .filter(|s| !s.get_ref().is_empty())
        .map(|s| cx.path(s.get_ref()))
        .collect()
}
