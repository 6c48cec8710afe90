//! Request targets: how the proxy port turns a parsed request head into the destination it
//! dials, for the two request shapes an explicit proxy serves (RFC 9112 §3.2):
//!
//! * authority form, `CONNECT host:port` → [`connect_target`] (used by [`crate::front`]);
//! * absolute form, `GET http://host[:port]/path` → [`absolute_target`] (used by
//!   [`crate::forward`]).
//!
//! Both are pure functions of the request target, with no I/O, policy or configuration, so the
//! `request_head` fuzz target (`fuzz/fuzz_targets/request_head.rs`) can run them on arbitrary
//! heads and the unit tests below need no gateway. The returned [`Host`] is what the policy
//! sees, what is logged and what is dialed, so it is normalised by [`Host::parse`] like every
//! other name (security matrix PE-06, PE-17).
//!
//! The `Host` header is deliberately not consulted: RFC 9110 §9.3.6 makes the request target
//! the tunnel's destination, and an HTTP/1.0 CONNECT without `Host` (what `openssl s_client
//! -proxy` sends) must work (security matrix PP-01, control case).

use http::Uri;
use sluice_policy::name::Host;

/// Destination of a CONNECT request: its authority-form target, validated (RFC 9110 §9.3.6:
/// a host and a non-zero port, nothing else). A scheme, a path, userinfo, a missing or zero
/// port, or a host that is not a valid name or address are refused with the reason the client
/// is shown (security matrix PP-01).
pub fn connect_target(uri: &Uri) -> Result<(Host, u16), &'static str> {
    // `http::Uri` gives an authority-form target no path at all, so the `/` allowance only
    // ever meets targets that are refused anyway (a scheme, or no authority).
    if uri.scheme().is_some()
        || uri
            .path_and_query()
            .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
    {
        return Err("CONNECT target must be host:port");
    }
    let auth = uri.authority().ok_or("CONNECT target must be host:port")?;
    // `Authority::host()` silently drops userinfo; a CONNECT line has no use for it, and
    // accepting it would let `user@allowed.test` text reach logs that differ from the dial.
    if auth.as_str().contains('@') {
        return Err("CONNECT target must not carry userinfo");
    }
    let (host, port) = host_and_port(auth.as_str()).ok_or("CONNECT target must be host:port")?;
    let port = port
        .and_then(port_number)
        .ok_or("CONNECT target needs a port")?;
    if port == 0 {
        return Err("port 0 is not a valid destination");
    }
    let host = Host::parse(host).map_err(|_| "CONNECT host is not a valid name or address")?;
    Ok((host, port))
}

/// Destination of an absolute-form request (`GET http://host[:port]/path`): only `http://` is
/// proxied this way (HTTPS goes through CONNECT), and the port defaults to 80.
pub fn absolute_target(uri: &Uri) -> Result<(Host, u16), &'static str> {
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => {
            return Err("only http:// URLs can be proxied in absolute form; use CONNECT for https")
        }
        None => return Err("a proxy request needs an absolute URL (http://host/path)"),
    }
    let auth = uri.authority().ok_or("the URL has no host")?;
    // RFC 9110 §4.2.4: userinfo in an http URL is treated as an error. `http://bank.test@evil.test/`
    // is a phishing classic, and a destination that reads differently in the log and in the
    // dial is what a gateway must never have.
    if auth.as_str().contains('@') {
        return Err("the URL must not carry userinfo (user@host)");
    }
    let (host, port) =
        host_and_port(auth.as_str()).ok_or("the URL's host is not a valid name or address")?;
    // RFC 3986 §3.2.3: an empty port (`http://host:/`) is the scheme's default.
    let port = match port {
        None | Some("") => 80,
        Some(text) => port_number(text).ok_or("the URL's port is not a valid port number")?,
    };
    // As for CONNECT: `http://host:0/` used to reach the dialer (found by the `request_head`
    // fuzz target; fuzz/regressions/request_head/absolute-port-0).
    if port == 0 {
        return Err("port 0 is not a valid destination");
    }
    let host = Host::parse(host).map_err(|_| "the URL's host is not a valid name or address")?;
    Ok((host, port))
}

/// Splits `host[:port]` as written: the host text (an IP literal keeps its brackets, as
/// [`Host::parse`] takes it) and the port text after the `:`, if there is one. `None` when
/// anything else follows the host.
///
/// Not `Authority::host()` and `port_u16()`: `http` validates an authority loosely, `host()`
/// stops at the first `:` (or the `]`) while the port is read after the last `:`, and a port
/// that does not parse reads as no port. So `[::1]junk:443` dialed `::1`, and
/// `http://f:11]/` dialed `f` on the default port 80 (found by the `request_head` fuzz
/// target; `fuzz/regressions/request_head/`): text the client wrote was silently dropped from
/// the destination that policy checked, logs showed and the dialer used.
fn host_and_port(host_port: &str) -> Option<(&str, Option<&str>)> {
    let host_len = if host_port.starts_with('[') {
        host_port.find(']')? + 1
    } else {
        host_port.find(':').unwrap_or(host_port.len())
    };
    let (host, rest) = host_port.split_at(host_len);
    if rest.is_empty() {
        return Some((host, None));
    }
    Some((host, Some(rest.strip_prefix(':')?)))
}

/// RFC 3986 §3.2.3 `port = *DIGIT` as a 16-bit number: digits only (leading zeros are
/// allowed; a sign, spaces or trailing text are not, though `u16::from_str` takes `+443`).
fn port_number(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(s: &str) -> Result<(String, u16), &'static str> {
        let uri: Uri = s.parse().map_err(|_| "unparsable")?;
        connect_target(&uri).map(|(h, p)| (h.to_string(), p))
    }

    fn absolute(s: &str) -> Result<(String, u16), &'static str> {
        let uri: Uri = s.parse().map_err(|_| "unparsable")?;
        absolute_target(&uri).map(|(h, p)| (h.to_string(), p))
    }

    #[test]
    fn connect_target_accepts_host_and_port() {
        assert_eq!(connect("ok.test:443"), Ok(("ok.test".into(), 443)));
        assert_eq!(connect("OK.Test.:8443"), Ok(("ok.test".into(), 8443)));
        assert_eq!(connect("[::1]:443"), Ok(("::1".into(), 443)));
        assert_eq!(connect("127.1:443"), Ok(("127.0.0.1".into(), 443)));
        assert_eq!(
            connect("[::ffff:10.0.0.1]:443"),
            Ok(("10.0.0.1".into(), 443))
        );
    }

    #[test]
    fn connect_target_refuses_the_pp01_forms() {
        assert_eq!(connect("ok.test"), Err("CONNECT target needs a port"));
        assert_eq!(connect("ok.test:"), Err("CONNECT target needs a port"));
        assert_eq!(
            connect("ok.test:0"),
            Err("port 0 is not a valid destination")
        );
        assert_eq!(connect("ok.test:65536"), Err("CONNECT target needs a port"));
        assert_eq!(
            connect("ok.test:443abc"),
            Err("CONNECT target needs a port")
        );
        assert_eq!(
            connect("user@ok.test:443"),
            Err("CONNECT target must not carry userinfo")
        );
        assert_eq!(
            connect("http://ok.test:443/"),
            Err("CONNECT target must be host:port")
        );
        assert_eq!(connect("/"), Err("CONNECT target must be host:port"));
        assert_eq!(connect("*"), Err("CONNECT target must be host:port"));
        assert_eq!(
            connect(":443"),
            Err("CONNECT host is not a valid name or address")
        );
        assert_eq!(
            connect("[v1.x]:443"),
            Err("CONNECT host is not a valid name or address")
        );
        // Not even a URI: hyper answers 400 before the proxy sees them.
        assert_eq!(connect("ok.test:443/x"), Err("unparsable"));
        assert_eq!(connect("[::1:443"), Err("unparsable"));
        assert_eq!(connect("blocked%2etest:443"), Err("unparsable"));
    }

    #[test]
    fn absolute_target_takes_http_urls() {
        assert_eq!(absolute("http://ok.test/x"), Ok(("ok.test".into(), 80)));
        assert_eq!(
            absolute("HTTP://OK.test:8080/"),
            Ok(("ok.test".into(), 8080))
        );
        assert_eq!(absolute("http://ok.test:/"), Ok(("ok.test".into(), 80)));
        assert_eq!(absolute("http://[::1]/"), Ok(("::1".into(), 80)));
        // Userinfo is refused (RFC 9110 §4.2.4), not stripped.
        assert_eq!(
            absolute("http://u:p@ok.test/"),
            Err("the URL must not carry userinfo (user@host)")
        );
        assert_eq!(
            absolute("http://bank.test@evil.test/"),
            Err("the URL must not carry userinfo (user@host)")
        );
    }

    /// Text between the host and the port, or a port that is not all digits, used to vanish
    /// from the destination (fuzz/regressions/request_head/absolute-bracket-userinfo-junk-port).
    #[test]
    fn junk_around_the_host_or_port_is_refused_not_dropped() {
        assert_eq!(
            absolute("http://[@f:11]/"),
            Err("the URL must not carry userinfo (user@host)")
        );
        assert_eq!(
            absolute("http://ok.test:443abc/"),
            Err("the URL's port is not a valid port number")
        );
        assert_eq!(
            absolute("http://ok.test:65536/"),
            Err("the URL's port is not a valid port number")
        );
        assert_eq!(
            absolute("http://ok.test:+8080/"),
            Err("the URL's port is not a valid port number")
        );
        assert_eq!(
            absolute("http://[::1]junk:8080/"),
            Err("the URL's host is not a valid name or address")
        );
        assert_eq!(
            connect("[::1]junk:443"),
            Err("CONNECT target must be host:port")
        );
        assert_eq!(connect("ok.test:+443"), Err("CONNECT target needs a port"));
        // Leading zeros are digits all the same (RFC 3986 `port = *DIGIT`).
        assert_eq!(connect("ok.test:00443"), Ok(("ok.test".into(), 443)));
        assert_eq!(absolute("http://ok.test:0080/"), Ok(("ok.test".into(), 80)));
    }

    /// fuzz/regressions/request_head/absolute-port-0
    #[test]
    fn absolute_target_refuses_port_0() {
        for url in ["http://ok:0", "http://ok.test:0/x", "http://[::1]:000/"] {
            assert_eq!(
                absolute(url),
                Err("port 0 is not a valid destination"),
                "{url}"
            );
        }
    }

    #[test]
    fn absolute_target_refuses_other_shapes() {
        assert_eq!(
            absolute("https://ok.test/"),
            Err("only http:// URLs can be proxied in absolute form; use CONNECT for https")
        );
        assert_eq!(
            absolute("/x"),
            Err("a proxy request needs an absolute URL (http://host/path)")
        );
        assert_eq!(
            absolute("ok.test:443"),
            Err("a proxy request needs an absolute URL (http://host/path)")
        );
        assert_eq!(
            absolute("http://:80/"),
            Err("the URL's host is not a valid name or address")
        );
        assert_eq!(
            absolute("http://[fe80::1%25eth0]/"),
            Err("the URL's host is not a valid name or address")
        );
    }
}
