//! HTTP/1.1 request heads from arbitrary bytes, through the proxy's own request-target logic.
//!
//! The head is parsed the way hyper's server does it (httparse with hyper's default of 100
//! headers, hyper's 65534-byte URI limit, then `http`'s method, URI and header types), so the
//! requests reaching `sluice_proxy::target` are the ones the proxy port could really hand it.
//! Both target functions run on every request, whatever its method: they are pure.
//!
//! Invariants: no panic; a returned port is never 0 and is the port written in the target
//! (absolute form without one: 80); a returned host re-parses to itself, and an address that
//! `std::net` reads is that address (IPv4-mapped IPv6 as IPv4, as `Host` normalises it); a
//! CONNECT target with userinfo, a path, a query or a scheme is refused; only `http://`
//! targets pass as absolute form; no target passes as both.
#![no_main]

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use libfuzzer_sys::fuzz_target;
use sluice_policy::name::Host;
use sluice_proxy::target::{absolute_target, connect_target};

/// hyper's `DEFAULT_MAX_HEADERS`: a head with more is a 431 before any target logic.
const MAX_HEADERS: usize = 100;
/// hyper's `MAX_URI_LEN`: a longer target is a 414.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = head.parse(data) else {
        return;
    };
    let (Some(method), Some(raw_target), Some(version)) = (head.method, head.path, head.version)
    else {
        return;
    };
    if raw_target.len() > MAX_URI_LEN {
        return;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let Ok(uri) = Uri::try_from(raw_target) else {
        return;
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .version(if version == 1 {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        });
    for h in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return;
        };
        builder = builder.header(name, value);
    }
    let Ok(req) = builder.body(()) else {
        return;
    };
    let uri = req.uri();

    let connect = connect_target(uri);
    let absolute = absolute_target(uri);

    for (h, port) in connect.iter().chain(absolute.iter()) {
        assert_ne!(*port, 0, "port 0 accepted for {raw_target:?}");
        let text = h.to_string();
        assert_eq!(
            Host::parse(&text).as_ref(),
            Ok(h),
            "host {text:?} from {raw_target:?} did not round-trip"
        );
        check_address(uri, h, raw_target);
    }

    if let Ok((_, port)) = &connect {
        // Authority form is `host:port` and nothing more (RFC 9110 §9.3.6, matrix PP-01).
        assert!(
            !raw_target.contains(['@', '/', '?', '#']),
            "CONNECT accepted userinfo, a path, a query or a scheme: {raw_target:?}"
        );
        let written = uri.authority().and_then(|a| written_port(a.as_str()));
        assert_eq!(
            written.and_then(digits_value),
            Some(*port),
            "CONNECT {raw_target:?} dials a port it does not spell in digits"
        );
    }

    if let Ok((_, port)) = &absolute {
        assert!(
            raw_target
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://")),
            "absolute form accepted a target that is not http://: {raw_target:?}"
        );
        let expected = match uri.authority().and_then(|a| written_port(a.as_str())) {
            None | Some("") => Some(80),
            Some(written) => digits_value(written),
        };
        assert_eq!(
            expected,
            Some(*port),
            "{raw_target:?} dials a port other than the one it spells"
        );
    }

    assert!(
        connect.is_err() || absolute.is_err(),
        "{raw_target:?} passed as both a CONNECT and an absolute-form target"
    );
});

/// The port text of an authority as written (after `:`), userinfo and host skipped; `None`
/// when there is no `:` after the host.
fn written_port(authority: &str) -> Option<&str> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let rest = if host_port.starts_with('[') {
        &host_port[host_port.find(']')? + 1..]
    } else {
        host_port.find(':').map_or("", |i| &host_port[i..])
    };
    rest.strip_prefix(':')
}

/// The value of a port written as RFC 3986 `port = *DIGIT` (leading zeros allowed), if it is
/// all digits and fits in 16 bits.
fn digits_value(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = s.trim_start_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    significant.parse().ok()
}

/// Differential against `std::net`: when the host as written is an address `std` reads, the
/// destination is that address, never a domain name a destination check could miss (PE-17).
fn check_address(uri: &Uri, host: &Host, raw_target: &str) {
    let Some(written) = uri.host() else {
        return;
    };
    let bare = written
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(written);
    let Ok(ip) = bare.parse::<IpAddr>() else {
        return;
    };
    let expected = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    assert_eq!(
        host.ip(),
        Some(expected),
        "{raw_target:?}: std reads {ip}, the proxy dials {host}"
    );
}
