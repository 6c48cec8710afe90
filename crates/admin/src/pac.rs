//! `GET /proxy.pac`: a proxy auto-config file that sends web traffic to this gateway and
//! sends DIRECT what must not go through it — plain host names (intranet), `localhost`,
//! loopback/private/link-local IP literals, and `admin.pac_direct` patterns.
//!
//! The script never calls `isInNet` or `dnsResolve` on a name: those make the browser resolve
//! every host before each request (slow, and a DNS leak); private ranges are only recognised
//! on IP literals. There is no `DIRECT` fallback after the proxy: a gateway that is down must
//! not silently turn into no gateway.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::IntoResponse;

use crate::auth::{host_name, request_host};
use crate::AdminState;

/// Content type browsers expect for PAC files.
pub const CONTENT_TYPE: &str = "application/x-ns-proxy-autoconfig";

/// `GET /proxy.pac`.
pub async fn serve(State(s): State<AdminState>, req: Request) -> impl IntoResponse {
    let host = request_host(&req);
    let via = host.as_deref().map(host_name).unwrap_or("127.0.0.1");
    let snap = s.rt.snapshot.load();
    let proxies = if s.settings().proxy_addrs.is_empty() {
        snap.config.proxy.listen.clone()
    } else {
        s.settings().proxy_addrs.clone()
    };
    let body = render(&proxies, via, &snap.config.admin.pac_direct);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

/// The PAC script. `via` is the name the client used to reach the admin listener: it stands in
/// for a proxy listener bound to an unspecified address (`0.0.0.0`, `::`).
pub fn render(proxies: &[SocketAddr], via: &str, direct: &[String]) -> String {
    let targets: Vec<String> = proxies
        .iter()
        .map(|a| format!("PROXY {}", proxy_address(*a, via)))
        .collect();
    let proxy = js_string(&targets.join("; "));
    let mut rules = String::new();
    for pattern in direct {
        match direct_rule(pattern) {
            Some(rule) => {
                rules.push_str("  if (");
                rules.push_str(&rule);
                rules.push_str(") return \"DIRECT\";\n");
            }
            None => tracing::warn!(
                pattern,
                "admin.pac_direct entry ignored: not a host pattern"
            ),
        }
    }
    format!(
        r#"// sluice proxy auto-config: web traffic through the gateway, local and listed hosts direct.
function FindProxyForURL(url, host) {{
  host = host.toLowerCase();
  if (isPlainHostName(host)) return "DIRECT";
  if (host == "localhost" || dnsDomainIs(host, ".localhost")) return "DIRECT";
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) {{
    if (isInNet(host, "127.0.0.0", "255.0.0.0") ||
        isInNet(host, "10.0.0.0", "255.0.0.0") ||
        isInNet(host, "172.16.0.0", "255.240.0.0") ||
        isInNet(host, "192.168.0.0", "255.255.0.0") ||
        isInNet(host, "169.254.0.0", "255.255.0.0") ||
        isInNet(host, "100.64.0.0", "255.192.0.0")) return "DIRECT";
  }}
  if (host.indexOf(":") >= 0) {{
    var h = host.replace(/^\[|\]$/g, "");
    if (h == "::1" || /^f[cd]/.test(h) || /^fe[89ab]/.test(h)) return "DIRECT";
  }}
{rules}  return {proxy};
}}
"#
    )
}

/// `ip:port` clients should use for a proxy listener.
fn proxy_address(addr: SocketAddr, via: &str) -> String {
    if !addr.ip().is_unspecified() {
        return addr.to_string();
    }
    match via.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", addr.port()),
        Ok(ip) => format!("{ip}:{}", addr.port()),
        // `via` passed the Host allow-list or is a name the client resolved to reach us.
        Err(_) if is_host_name(via) => format!("{via}:{}", addr.port()),
        Err(_) => format!("127.0.0.1:{}", addr.port()),
    }
}

/// `*.example.com` → the domain and its subdomains; `example.com` → that host only (the
/// pattern rules of the policy). Anything but a plain host pattern is refused, so nothing
/// from the config can break out of the script.
fn direct_rule(pattern: &str) -> Option<String> {
    let p = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
    let (wild, name) = match p.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, p),
    };
    if !is_host_name(&name) {
        return None;
    }
    let exact = format!("host == {}", js_string(&name));
    Some(if wild {
        format!(
            "{exact} || dnsDomainIs(host, {})",
            js_string(&format!(".{name}"))
        )
    } else {
        exact
    })
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn js_string(s: &str) -> String {
    // JSON string syntax is valid JavaScript; the inputs are already restricted to host
    // characters, this is belt and braces.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_and_direct_rules() {
        let pac = render(
            &["127.0.0.1:3128".parse().unwrap()],
            "127.0.0.1",
            &["*.corp.example".into(), "intranet.example".into()],
        );
        assert!(pac.contains("return \"PROXY 127.0.0.1:3128\";"), "{pac}");
        assert!(pac.contains("host == \"corp.example\" || dnsDomainIs(host, \".corp.example\")"));
        assert!(pac.contains("if (host == \"intranet.example\") return \"DIRECT\";"));
        assert!(pac.contains("isPlainHostName(host)"));
    }

    #[test]
    fn unspecified_listener_uses_the_name_the_client_used() {
        let pac = render(&["0.0.0.0:3128".parse().unwrap()], "gw.corp", &[]);
        assert!(pac.contains("PROXY gw.corp:3128"), "{pac}");
        let pac = render(&["[::]:3128".parse().unwrap()], "::1", &[]);
        assert!(pac.contains("PROXY [::1]:3128"), "{pac}");
    }

    #[test]
    fn hostile_patterns_are_dropped() {
        let pac = render(
            &["127.0.0.1:3128".parse().unwrap()],
            "127.0.0.1",
            &["\"); alert(1); (\"".into(), "a b".into(), "".into()],
        );
        assert!(!pac.contains("alert"));
        assert_eq!(pac.matches("return \"DIRECT\"").count(), 4, "{pac}");
    }
}
