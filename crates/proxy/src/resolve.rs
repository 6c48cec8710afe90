//! Name resolution and destination control.
//!
//! Names resolve from `upstream.hosts_file` first (Squid's `hosts_file`; tests map their names
//! to loopback this way), then DNS: the servers of `upstream.dns_servers` through [`dns`], or
//! the system resolver, either way within `upstream.dns_timeout`. Every resolved address is checked before it is dialled —
//! and the gateway dials exactly the address it checked, so DNS rebinding cannot swap in a
//! private address between check and connect (security matrix PE-17, AD-02). The gateway's own
//! listeners are refused whatever `allow_private` says.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use sluice_policy::config::AllowPrivate;
use sluice_policy::name::Host;
use tokio::net::TcpStream;

mod dns;

pub use dns::{DnsClient, DnsError, CACHE_ENTRIES, MAX_IN_FLIGHT, NEGATIVE_TTL_FLOOR, TTL_CEILING};

/// The resolve deadline when the config does not say (`upstream.dns_timeout`).
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a destination could not be reached or was refused.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// DNS gave no usable answer (the system resolver's errors, which say little more).
    #[error("DNS lookup for {host} failed: {message}")]
    Dns {
        /// The name.
        host: String,
        /// What DNS said.
        message: String,
    },
    /// The name does not exist.
    #[error("DNS lookup for {0} failed: the name does not exist (NXDOMAIN)")]
    DnsNxDomain(String),
    /// The DNS server failed (SERVFAIL, REFUSED, ...).
    #[error("DNS lookup for {host} failed: the server answered {rcode}")]
    DnsServerFailure {
        /// The name.
        host: String,
        /// The response code.
        rcode: String,
    },
    /// The DNS server's reply could not be parsed.
    #[error("DNS lookup for {0} failed: the server's reply could not be parsed")]
    DnsBadReply(String),
    /// The name has no address.
    #[error("DNS lookup for {0} found no address")]
    DnsNoAddress(String),
    /// DNS did not answer in time.
    #[error("DNS lookup for {0} timed out")]
    DnsTimeout(String),
    /// The address is loopback/private/link-local/own listener and not allowed.
    #[error("destination {addr} is a {class} address, which this gateway does not connect to")]
    Refused {
        /// The refused address.
        addr: IpAddr,
        /// Its class.
        class: &'static str,
    },
    /// Connecting failed.
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Connecting took too long.
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
}

impl DialError {
    /// Stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Dns { .. } => "dns_failed",
            Self::DnsNxDomain(_) => "dns_nxdomain",
            Self::DnsServerFailure { .. } => "dns_servfail",
            Self::DnsBadReply(_) => "dns_bad_reply",
            Self::DnsNoAddress(_) => "dns_no_address",
            Self::DnsTimeout(_) => "dns_timeout",
            Self::Refused { .. } => "destination_refused",
            Self::Connect { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                "upstream_refused"
            }
            Self::Connect { .. } => "upstream_unreachable",
            Self::ConnectTimeout(_) => "upstream_connect_timeout",
        }
    }

    /// The HTTP status a client gets for it.
    pub fn status(&self) -> u16 {
        match self {
            Self::Refused { .. } => 403,
            Self::DnsTimeout(_) | Self::ConnectTimeout(_) => 504,
            _ => 502,
        }
    }
}

/// Resolves and dials upstream destinations.
#[derive(Debug)]
pub struct Dialer {
    hosts: HashMap<String, Vec<IpAddr>>,
    allow: AllowPrivate,
    own: Vec<SocketAddr>,
    connect_timeout: Duration,
    dns: Option<DnsClient>,
    dns_timeout: Duration,
}

impl Dialer {
    /// A dialer with a parsed hosts file, the private-destination policy and the gateway's own
    /// listener addresses.
    pub fn new(
        hosts: HashMap<String, Vec<IpAddr>>,
        allow: AllowPrivate,
        own: Vec<SocketAddr>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            hosts,
            allow,
            own,
            connect_timeout,
            dns: None,
            dns_timeout: DEFAULT_DNS_TIMEOUT,
        }
    }

    /// Resolve with these DNS servers instead of the system resolver (empty: keep the system
    /// resolver), each resolution within `timeout` in total.
    pub fn with_dns(mut self, servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        self.dns = (!servers.is_empty()).then(|| DnsClient::new(servers));
        self.dns_timeout = timeout;
        self
    }

    /// Resolves `host` and connects to the first allowed address that answers.
    pub async fn dial(&self, host: &Host, port: u16) -> Result<(TcpStream, SocketAddr), DialError> {
        let addrs = self.resolve(host, port).await?;
        let mut last = None;
        for addr in addrs {
            if let Err(e) = self.check(addr) {
                last = Some(e);
                continue;
            }
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr));
                }
                Ok(Err(source)) => last = Some(DialError::Connect { addr, source }),
                Err(_) => last = Some(DialError::ConnectTimeout(addr)),
            }
        }
        Err(last.unwrap_or_else(|| DialError::DnsNoAddress(host.to_string())))
    }

    /// Resolves a host to socket addresses (hosts file first, then DNS).
    pub async fn resolve(&self, host: &Host, port: u16) -> Result<Vec<SocketAddr>, DialError> {
        let name = match host {
            Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
            Host::Domain(d) => d.as_str(),
        };
        if let Some(ips) = self.hosts.get(name) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        let ips = match &self.dns {
            Some(dns) => {
                // The client splits the budget between servers; this deadline also covers
                // waiting for an in-flight slot.
                let lookup = dns.lookup(name, self.dns_timeout);
                match tokio::time::timeout(self.dns_timeout, lookup).await {
                    Ok(Ok(ips)) => ips,
                    Ok(Err(e)) => return Err(dns_error(name, e)),
                    Err(_) => return Err(DialError::DnsTimeout(name.into())),
                }
            }
            None => self.system_lookup(name, port).await?,
        };
        if ips.is_empty() {
            return Err(DialError::DnsNoAddress(name.into()));
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    /// getaddrinfo through tokio, within the resolve deadline.
    async fn system_lookup(&self, name: &str, port: u16) -> Result<Vec<IpAddr>, DialError> {
        let lookup = tokio::net::lookup_host((name, port));
        match tokio::time::timeout(self.dns_timeout, lookup).await {
            Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
            Ok(Err(e)) => Err(DialError::Dns {
                host: name.into(),
                message: e.to_string(),
            }),
            Err(_) => Err(DialError::DnsTimeout(name.into())),
        }
    }

    /// Refuses the gateway's own listeners always, and special-purpose ranges unless allowed.
    pub fn check(&self, addr: SocketAddr) -> Result<(), DialError> {
        let ip = canonical(addr.ip());
        // Connecting to an unspecified address (0.0.0.0, `::`, any of 0.0.0.0/8 on some
        // kernels) or to loopback reaches this host, so any listener of ours on that port,
        // wildcard binds included, whatever spelling embeds it (HC-03).
        let this_host = ip.is_loopback() || is_unspecified(ip);
        let own = self.own.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip().is_unspecified() || canonical(l.ip()) == ip || this_host)
        });
        if own {
            return Err(DialError::Refused {
                addr: ip,
                class: "gateway's own listener",
            });
        }
        let Some(class) = classify(ip) else {
            return Ok(());
        };
        let allowed = match &self.allow {
            AllowPrivate::None => false,
            AllowPrivate::All => true,
            AllowPrivate::Nets(nets) => nets.iter().any(|n| n.contains(&ip)),
        };
        if allowed {
            Ok(())
        } else {
            Err(DialError::Refused { addr: ip, class })
        }
    }
}

fn dns_error(name: &str, e: DnsError) -> DialError {
    let host = name.to_owned();
    match e {
        DnsError::NxDomain => DialError::DnsNxDomain(host),
        DnsError::ServerFailure(code) => DialError::DnsServerFailure {
            host,
            rcode: code.to_string(),
        },
        DnsError::BadReply => DialError::DnsBadReply(host),
        DnsError::NoAddress => DialError::DnsNoAddress(host),
        DnsError::Timeout => DialError::DnsTimeout(host),
        DnsError::Io(message) => DialError::Dns { host, message },
    }
}

/// IPv6 spellings that carry an IPv4 address are checked as the address they carry (HC-03):
/// a destination is what it embeds, whichever form the client wrote.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// 0.0.0.0/8 ("this network", RFC 1122 §3.2.1.3) and `::`.
fn is_unspecified(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 0,
        IpAddr::V6(v6) => v6.is_unspecified(),
    }
}

/// The IPv4 address an IPv6 address embeds, for every form that routes to (or is translated
/// into) that IPv4 address:
/// - IPv4-mapped `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2) — what a dual-stack socket connects to;
/// - IPv4-compatible `::a.b.c.d` (RFC 4291 §2.5.5.1, deprecated but still parsed), excluding
///   `::` and `::1`, which are IPv6's own unspecified and loopback addresses;
/// - IPv4-translated `::ffff:0:a.b.c.d` (RFC 2765 §2.1, SIIT);
/// - NAT64 `64:ff9b::/96` (RFC 6052 §2.1) and the local-use `64:ff9b:1::/48` (RFC 8215), whose
///   translators put the IPv4 address in the last 32 bits (the /96 layout);
/// - 6to4 `2002:V4ADDR::/48` (RFC 3056 §2), the IPv4 address in bits 16–47.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let last = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    match seg {
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(last),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => Some(last),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// The special-purpose class of an address, or None for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared address space (RFC 6598)")
    } else if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignment")
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        Some("private (unique local)")
    } else if (seg[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("reserved")
    } else if seg[0] == 0x2001 && seg[1] == 0 {
        // Teredo (RFC 4380 §4) tunnels to an obfuscated IPv4 address through a relay this
        // gateway has no business using.
        Some("reserved (Teredo)")
    } else if (seg[0] & 0xffc0) == 0xfec0 {
        // Deprecated site-local (RFC 3879), still routed as private by some networks.
        Some("private (site-local)")
    } else if seg[0] == 0x100 && seg[1..4] == [0, 0, 0] {
        Some("reserved (discard-only, RFC 6666)")
    } else {
        // Forms that embed an IPv4 address never get here: `classify` checks them as IPv4.
        None
    }
}

/// Parses a hosts file (`/etc/hosts` format). Names are lowercased; unparsable lines skipped.
pub fn parse_hosts(text: &str) -> HashMap<String, Vec<IpAddr>> {
    let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        for name in fields {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let entry = map.entry(name).or_default();
            if !entry.contains(&ip) {
                entry.push(ip);
            }
        }
    }
    map
}

/// Reads a hosts file; a missing file is an empty map (the default `/etc/hosts` may not exist).
pub fn load_hosts(path: Option<&Path>) -> std::io::Result<HashMap<String, Vec<IpAddr>>> {
    match path {
        None => Ok(HashMap::new()),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => Ok(parse_hosts(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_special_ranges() {
        for (ip, class) in [
            ("127.0.0.1", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("169.254.169.254", Some("link-local (cloud metadata)")),
            ("100.100.100.200", Some("shared address space (RFC 6598)")),
            ("0.0.0.0", Some("unspecified")),
            ("::1", Some("loopback")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("fd00::1", Some("private (unique local)")),
            ("fe80::1", Some("link-local")),
            ("64:ff9b::a00:1", Some("private")),
            // HC-03: every spelling that embeds an IPv4 address is that address.
            ("0.1.2.3", Some("unspecified")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::127.0.0.1", Some("loopback")),
            ("::10.0.0.1", Some("private")),
            ("::ffff:0:127.0.0.1", Some("loopback")),
            ("64:ff9b:1::7f00:1", Some("loopback")),
            ("2002:7f00:1::", Some("loopback")),
            ("2002:a9fe:a9fe::1", Some("link-local (cloud metadata)")),
            ("2002:5db8:d822::1", None),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                Some("reserved (Teredo)"),
            ),
            ("::", Some("unspecified")),
            ("93.184.216.34", None),
            ("2606:4700::1111", None),
        ] {
            assert_eq!(classify(ip.parse().unwrap()), class, "{ip}");
        }
    }

    #[test]
    fn own_listener_refused_even_when_private_allowed() {
        let own = vec!["127.0.0.1:3128".parse().unwrap()];
        let d = Dialer::new(
            HashMap::new(),
            AllowPrivate::All,
            own,
            Duration::from_secs(1),
        );
        assert!(d.check("127.0.0.1:3128".parse().unwrap()).is_err());
        assert!(d.check("127.0.0.2:3128".parse().unwrap()).is_err());
        assert!(d.check("127.0.0.1:443".parse().unwrap()).is_ok());
        // HC-03: unspecified and embedded spellings of this host reach the listener too.
        for spelling in [
            "0.0.0.0:3128",
            "0.1.2.3:3128",
            "[::]:3128",
            "[::1]:3128",
            "[::ffff:0.0.0.0]:3128",
            "[::ffff:127.0.0.1]:3128",
            "[::127.0.0.1]:3128",
            "[::ffff:0:127.0.0.1]:3128",
            "[64:ff9b::7f00:1]:3128",
            "[2002:7f00:1::]:3128",
        ] {
            let e = d.check(spelling.parse().unwrap()).unwrap_err();
            assert!(
                matches!(
                    e,
                    DialError::Refused {
                        class: "gateway's own listener",
                        ..
                    }
                ),
                "{spelling}: {e}"
            );
        }
        // A wildcard listener is reached through every address of this host.
        let wild = Dialer::new(
            HashMap::new(),
            AllowPrivate::All,
            vec!["[::]:9128".parse().unwrap()],
            Duration::from_secs(1),
        );
        assert!(wild.check("0.0.0.0:9128".parse().unwrap()).is_err());
        assert!(wild.check("10.1.2.3:9128".parse().unwrap()).is_err());
        assert!(wild.check("10.1.2.3:443".parse().unwrap()).is_ok());
        let strict = Dialer::new(
            HashMap::new(),
            AllowPrivate::None,
            vec![],
            Duration::from_secs(1),
        );
        assert!(strict.check("127.0.0.1:443".parse().unwrap()).is_err());
        assert!(strict
            .check("[::ffff:10.0.0.1]:443".parse().unwrap())
            .is_err());
    }

    #[tokio::test]
    async fn dns_failures_have_stable_codes_and_statuses() {
        let stub = sluice_test_support::StubDns::start();
        let d = Dialer::new(
            HashMap::new(),
            AllowPrivate::None,
            vec![],
            Duration::from_secs(10),
        )
        .with_dns(vec![stub.addr()], Duration::from_millis(500));
        for (name, code, status) in [
            ("nx.test", "dns_nxdomain", 502),
            ("sf.test", "dns_servfail", 502),
            ("garbage.test", "dns_bad_reply", 502),
            ("to.test", "dns_timeout", 504),
        ] {
            let host = Host::parse(name).unwrap();
            let started = std::time::Instant::now();
            let e = d.dial(&host, 443).await.unwrap_err();
            assert_eq!((e.code(), e.status()), (code, status), "{name}: {e}");
            assert!(started.elapsed() < Duration::from_secs(2), "{name}");
        }
        // Resolved to loopback only: refused, never dialled.
        let e = d
            .dial(&Host::parse("v6.test").unwrap(), 443)
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.status()), ("destination_refused", 403));
    }

    #[test]
    fn hosts_file_parsing() {
        let map = parse_hosts("# c\n127.0.0.1 Origin.Test zoom.us. # x\nbad line\n::1 v6.test\n");
        assert_eq!(
            map["origin.test"],
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert!(map.contains_key("zoom.us"));
        assert!(map.contains_key("v6.test"));
        assert_eq!(map.len(), 3);
    }
}
