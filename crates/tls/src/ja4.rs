//! FoxIO JA4 TLS client fingerprint of a parsed [`ClientHello`], for TLS over TCP only.
//!
//! Follows `technical_details/JA4.md` in github.com/FoxIO-LLC/ja4 (JA4 is BSD 3-Clause):
//! `t` + version + `d`/`i` + cipher count + extension count + ALPN first/last, then a truncated
//! SHA-256 of the sorted ciphers, then one of the sorted extensions (without SNI and ALPN)
//! followed by the signature algorithms in wire order. GREASE values (RFC 8701) are ignored
//! everywhere. Only the hashed form is produced; no raw (`_r`) or original-order (`_o`) forms,
//! and no QUIC or DTLS variants.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::hello::{is_grease, ClientHello, EXT_ALPN, EXT_SERVER_NAME, EXT_SUPPORTED_VERSIONS};

/// What JA4 prints instead of hashing an empty list.
const EMPTY_HASH: &str = "000000000000";

/// The JA4 fingerprint of `hello`, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
pub fn ja4(hello: &ClientHello) -> String {
    let ciphers = sorted_hex(&hello.cipher_suites, |_| true);
    let extensions = sorted_hex(&hello.extensions, |t| t != EXT_SERVER_NAME && t != EXT_ALPN);
    let sigalgs = joined_hex(
        hello
            .signature_algorithms
            .iter()
            .copied()
            .filter(|&v| !is_grease(v)),
    );
    // "If there are no signature algorithms in the hello packet, then the string ends without
    // an underscore"; an empty extension list is printed as zeros, signatures or not.
    let extension_hash = if extensions.is_empty() {
        EMPTY_HASH.to_owned()
    } else if sigalgs.is_empty() {
        hash12(&extensions)
    } else {
        hash12(&format!("{extensions}_{sigalgs}"))
    };
    format!(
        "t{version}{sni}{ciphers:02}{exts:02}{alpn}_{cipher_hash}_{extension_hash}",
        version = version_code(hello),
        sni = if hello.extensions.contains(&EXT_SERVER_NAME) {
            'd'
        } else {
            'i'
        },
        ciphers = count(&hello.cipher_suites),
        exts = count(&hello.extensions),
        alpn = alpn_code(hello.alpn.first().map(Vec::as_slice)),
        cipher_hash = if ciphers.is_empty() {
            EMPTY_HASH.to_owned()
        } else {
            hash12(&ciphers)
        },
    )
}

/// Highest non-GREASE `supported_versions` entry when the extension is present, else the
/// ClientHello's `legacy_version` (never the record version).
fn version_code(hello: &ClientHello) -> &'static str {
    let version = if hello.extensions.contains(&EXT_SUPPORTED_VERSIONS) {
        hello
            .supported_versions
            .iter()
            .copied()
            .filter(|&v| !is_grease(v))
            .max()
    } else {
        Some(hello.legacy_version)
    };
    match version {
        Some(0x0304) => "13",
        Some(0x0303) => "12",
        Some(0x0302) => "11",
        Some(0x0301) => "10",
        Some(0x0300) => "s3",
        Some(0x0002) => "s2",
        _ => "00",
    }
}

/// Non-GREASE entries, capped at 99 so the field stays two digits.
fn count(values: &[u16]) -> usize {
    values.iter().filter(|&&v| !is_grease(v)).count().min(99)
}

/// First and last character of the first ALPN name; when either end byte is not ASCII
/// alphanumeric, the first and last character of the name's hex form instead. `00` when there
/// is no name. A one-byte name gives that character twice.
fn alpn_code(first: Option<&[u8]>) -> String {
    let Some((&head, &tail)) = first.and_then(|name| name.first().zip(name.last())) else {
        return "00".to_owned();
    };
    if head.is_ascii_alphanumeric() && tail.is_ascii_alphanumeric() {
        return [char::from(head), char::from(tail)].iter().collect();
    }
    let hex_head = hex::encode([head]);
    let hex_tail = hex::encode([tail]);
    hex_head
        .chars()
        .take(1)
        .chain(hex_tail.chars().skip(1))
        .collect()
}

/// Non-GREASE values that pass `keep`, sorted, as 4-digit lowercase hex joined by `,`.
fn sorted_hex(values: &[u16], keep: impl Fn(u16) -> bool) -> String {
    let mut kept: Vec<u16> = values
        .iter()
        .copied()
        .filter(|&v| !is_grease(v) && keep(v))
        .collect();
    kept.sort_unstable();
    joined_hex(kept)
}

fn joined_hex(values: impl IntoIterator<Item = u16>) -> String {
    let mut out = String::new();
    for value in values {
        if !out.is_empty() {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{value:04x}");
    }
    out
}

/// First 12 lowercase hex digits of SHA-256.
fn hash12(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of JA4.md: TLS 1.3, SNI, 15 ciphers, 16 extensions, ALPN h2.
    fn spec_example() -> ClientHello {
        ClientHello {
            record_version: 0x0301,
            legacy_version: 0x0303,
            cipher_suites: vec![
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions: vec![
                0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
                0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
            ],
            sni: Some("example.com".to_owned()),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            supported_versions: vec![0x0304, 0x0303],
            signature_algorithms: vec![
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
            supported_groups: vec![0x001d, 0x0017],
            ech: false,
            consumed: 0,
        }
    }

    #[test]
    fn spec_worked_example() {
        assert_eq!(ja4(&spec_example()), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn spec_hashes_of_parts() {
        let hello = spec_example();
        assert_eq!(
            hash12(&sorted_hex(&hello.cipher_suites, |_| true)),
            "8daaf6152771"
        );
        // "If there are no signature algorithms ... = 6d807ffa2a79"
        let exts = sorted_hex(&hello.extensions, |t| t != EXT_SERVER_NAME && t != EXT_ALPN);
        assert_eq!(
            exts,
            "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"
        );
        assert_eq!(hash12(&exts), "6d807ffa2a79");
        let no_sigalgs = ClientHello {
            signature_algorithms: vec![],
            ..hello
        };
        assert_eq!(ja4(&no_sigalgs), "t13d1516h2_8daaf6152771_6d807ffa2a79");
    }

    #[test]
    fn grease_is_ignored_everywhere() {
        let mut hello = spec_example();
        hello.cipher_suites.insert(0, 0x0a0a);
        hello.extensions.insert(0, 0x1a1a);
        hello.extensions.push(0xfafa);
        hello.supported_versions.insert(0, 0xeaea);
        hello.signature_algorithms.insert(2, 0x5a5a);
        assert_eq!(ja4(&hello), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    /// A Chrome 143 hello (outer ECH, extensions permuted) with its published `ja4_ro`
    /// inputs; the expected value is the `ja4` that tool printed for them.
    #[test]
    fn chrome_with_ech_and_permuted_extensions() {
        let mut hello = spec_example();
        hello.extensions = vec![
            0x002d, 0x0033, 0x0010, 0xfe0d, 0x0017, 0x44cd, 0x0000, 0x000b, 0x000a, 0x002b, 0xff01,
            0x0023, 0x0012, 0x0005, 0x000d, 0x001b,
        ];
        hello.ech = true;
        assert_eq!(ja4(&hello), "t13d1516h2_8daaf6152771_d8a2da3f94cd");
    }

    #[test]
    fn version_sources() {
        let mut hello = spec_example();
        hello.extensions.retain(|&t| t != EXT_SUPPORTED_VERSIONS);
        assert!(ja4(&hello).starts_with("t12d1515h2_"), "{}", ja4(&hello));
        // The record version never counts, only legacy_version.
        hello.record_version = 0x0303;
        hello.legacy_version = 0x0301;
        assert!(ja4(&hello).starts_with("t10"));
        hello.legacy_version = 0x0300;
        assert!(ja4(&hello).starts_with("ts3"));
        hello.legacy_version = 0x0305;
        assert!(ja4(&hello).starts_with("t00"));
        // Present but only GREASE: no version to report.
        let mut grease_only = spec_example();
        grease_only.supported_versions = vec![0x0a0a];
        assert!(ja4(&grease_only).starts_with("t00"));
    }

    #[test]
    fn no_sni_no_alpn() {
        let mut hello = spec_example();
        hello
            .extensions
            .retain(|&t| t != EXT_SERVER_NAME && t != EXT_ALPN);
        hello.sni = None;
        hello.alpn.clear();
        // SNI and ALPN leave the counts but not the extension hash.
        assert_eq!(ja4(&hello), "t13i151400_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn empty_lists_hash_to_zeros() {
        let hello = ClientHello {
            cipher_suites: vec![0x0a0a],
            extensions: vec![],
            supported_versions: vec![],
            signature_algorithms: vec![],
            alpn: vec![],
            legacy_version: 0x0303,
            ..spec_example()
        };
        assert_eq!(ja4(&hello), "t12i000000_000000000000_000000000000");
        // Only SNI and ALPN: counted, but the hashed extension list is empty.
        let sni_alpn = ClientHello {
            extensions: vec![EXT_SERVER_NAME, EXT_ALPN],
            alpn: vec![b"h2".to_vec()],
            ..hello
        };
        assert_eq!(ja4(&sni_alpn), "t12d0002h2_000000000000_000000000000");
    }

    #[test]
    fn counts_cap_at_99() {
        let hello = ClientHello {
            cipher_suites: (1..=150).collect(),
            extensions: (0x100..0x200).collect(),
            ..spec_example()
        };
        assert!(ja4(&hello).starts_with("t12i9999"), "{}", ja4(&hello));
    }

    #[test]
    fn alpn_rules_from_spec() {
        let code = |name: &[u8]| alpn_code(Some(name));
        assert_eq!(code(b"h2"), "h2");
        assert_eq!(code(b"http/1.1"), "h1");
        assert_eq!(code(b"x"), "xx");
        assert_eq!(code(&[0xab]), "ab");
        assert_eq!(code(&[0xab, 0xcd]), "ad");
        assert_eq!(code(&[0x30, 0xab]), "3b");
        assert_eq!(code(&[0x30, 0x31, 0xab, 0xcd]), "3d");
        assert_eq!(code(&[0x30, 0xab, 0xcd, 0x31]), "01");
        assert_eq!(code(b""), "00");
        assert_eq!(alpn_code(None), "00");
    }

    #[test]
    fn grease_values() {
        let grease: Vec<u16> = (0..16).map(|i| 0x0a0a + i * 0x1010).collect();
        assert!(grease.iter().all(|&v| is_grease(v)));
        assert_eq!(grease.last(), Some(&0xfafa));
        for v in [0x0000, 0x0a0b, 0x1a0a, 0x0b0b, 0xfefe, 0x1301] {
            assert!(!is_grease(v), "{v:04x}");
        }
    }
}
