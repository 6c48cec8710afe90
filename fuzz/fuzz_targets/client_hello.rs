//! `parse_client_hello` on arbitrary bytes, whole and as the growing buffer of the peek loop.
//!
//! Invariants: no panic; a parsed hello never claims more bytes than it was given; once a prefix
//! parses (or fails), the whole input gives the same hello (or fails too), because the peek loop
//! acts on the first definite answer; the JA4 of every parsed hello has JA4's shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_tls::hello::{parse_client_hello, ClientHello};
use sluice_tls::ja4::ja4;

/// The gateway's own limit on a ClientHello (`proxy.max_client_hello` default).
const MAX_LEN: usize = 64 * 1024;

/// Every prefix up to this length is tried; past it, about this many evenly spaced ones, so a
/// long input costs O(n) parses rather than O(n²).
const DENSE_PREFIXES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let whole = parse_client_hello(data, MAX_LEN);
    if let Ok(Some(hello)) = &whole {
        assert!(hello.consumed <= data.len(), "consumed past the input");
        check_ja4(hello);
    }
    let stride = (data.len() / DENSE_PREFIXES).max(1);
    let mut len = 0;
    while len < data.len() {
        match parse_client_hello(&data[..len], MAX_LEN) {
            Ok(None) => {}
            Ok(Some(hello)) => {
                assert!(hello.consumed <= len, "consumed past the prefix");
                assert_eq!(
                    whole.as_ref(),
                    Ok(&Some(hello)),
                    "prefix {len} parsed differently"
                );
            }
            Err(e) => assert!(
                whole.is_err(),
                "prefix {len} failed ({e}) but the whole parsed"
            ),
        }
        len += if len < DENSE_PREFIXES { 1 } else { stride };
    }
});

/// `t` + version + `d`/`i` + 2-digit cipher and extension counts + 2 ALPN characters, then two
/// 12-digit lowercase hex hashes (`ja4.rs`; FoxIO `technical_details/JA4.md`). The version is one
/// of JA4's codes, `s2` included (SSL 2.0, which JA4.md lists).
fn check_ja4(hello: &ClientHello) {
    let fp = ja4(hello);
    let ok = (|| {
        let (a, rest) = fp.split_once('_')?;
        let (b, c) = rest.split_once('_')?;
        let a = a.as_bytes();
        let version = std::str::from_utf8(a.get(1..3)?).ok()?;
        let is_hex12 =
            |s: &str| s.len() == 12 && s.bytes().all(|x| matches!(x, b'0'..=b'9' | b'a'..=b'f'));
        Some(
            a.len() == 10
                && a[0] == b't'
                && ["13", "12", "11", "10", "s3", "s2", "00"].contains(&version)
                && matches!(a[3], b'd' | b'i')
                && a[4..8].iter().all(u8::is_ascii_digit)
                && a[8..10].iter().all(u8::is_ascii_alphanumeric)
                && is_hex12(b)
                && is_hex12(c),
        )
    })()
    .unwrap_or(false);
    assert!(ok, "JA4 {fp:?} has the wrong shape");
}
