use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

const MAX: usize = DEFAULT_MAX_CLIENT_HELLO;

// === builders ===

/// A ClientHello body assembled from parts, so each test changes one thing.
#[derive(Clone)]
struct Hello {
    legacy_version: u16,
    session_id: Vec<u8>,
    ciphers: Vec<u16>,
    compression: Vec<u8>,
    /// `None` = no extensions block at all (a TLS 1.2-era hello).
    extensions: Option<Vec<(u16, Vec<u8>)>>,
}

impl Hello {
    /// A TLS 1.3 hello to `example.com` offering h2 and http/1.1.
    fn modern() -> Self {
        Self {
            legacy_version: 0x0303,
            session_id: vec![7; 32],
            ciphers: vec![0x1301, 0x1302, 0xc02b],
            compression: vec![0],
            extensions: Some(vec![
                sni("example.com"),
                alpn(&[b"h2", b"http/1.1"]),
                (EXT_SUPPORTED_VERSIONS, u8_list(&[0x0304, 0x0303])),
                (EXT_SIGNATURE_ALGORITHMS, u16_list(&[0x0403, 0x0804])),
                (EXT_SUPPORTED_GROUPS, u16_list(&[0x001d, 0x0017])),
            ]),
        }
    }

    fn with_ext(mut self, ext: (u16, Vec<u8>)) -> Self {
        self.extensions.get_or_insert_with(Vec::new).push(ext);
        self
    }

    fn without_ext(mut self, ext_type: u16) -> Self {
        if let Some(exts) = &mut self.extensions {
            exts.retain(|(t, _)| *t != ext_type);
        }
        self
    }

    fn body(&self) -> Vec<u8> {
        let mut b = self.legacy_version.to_be_bytes().to_vec();
        b.extend([0x42; 32]);
        b.push(self.session_id.len() as u8);
        b.extend(&self.session_id);
        b.extend(u16_list(&self.ciphers));
        b.push(self.compression.len() as u8);
        b.extend(&self.compression);
        if let Some(exts) = &self.extensions {
            let mut block = Vec::new();
            for (t, data) in exts {
                block.extend(t.to_be_bytes());
                block.extend(prefixed16(data));
            }
            b.extend(prefixed16(&block));
        }
        b
    }

    fn message(&self) -> Vec<u8> {
        handshake(&self.body())
    }

    /// In one record, as most clients send it.
    fn wire(&self) -> Vec<u8> {
        records(&self.message(), MAX_RECORD_PAYLOAD)
    }
}

fn prefixed16(data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u16).to_be_bytes().to_vec();
    out.extend(data);
    out
}

fn u16_list(values: &[u16]) -> Vec<u8> {
    prefixed16(
        &values
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<_>>(),
    )
}

fn u8_list(values: &[u16]) -> Vec<u8> {
    let mut out = vec![(values.len() * 2) as u8];
    out.extend(values.iter().flat_map(|v| v.to_be_bytes()));
    out
}

fn sni(name: &str) -> (u16, Vec<u8>) {
    sni_raw(name.as_bytes())
}

fn sni_raw(name: &[u8]) -> (u16, Vec<u8>) {
    let mut entry = vec![0];
    entry.extend(prefixed16(name));
    (EXT_SERVER_NAME, prefixed16(&entry))
}

fn alpn(names: &[&[u8]]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for name in names {
        list.push(name.len() as u8);
        list.extend(*name);
    }
    (EXT_ALPN, prefixed16(&list))
}

/// An outer `encrypted_client_hello` (RFC 9849 §5): type outer, HKDF-SHA256 + AES-128-GCM,
/// config id, a 32-byte `enc` and a dummy payload.
fn ech_outer() -> (u16, Vec<u8>) {
    let mut body = vec![0, 0x00, 0x01, 0x00, 0x01, 7];
    body.extend(prefixed16(&[0x11; 32]));
    body.extend(prefixed16(&[0x22; 48]));
    (EXT_ENCRYPTED_CLIENT_HELLO, body)
}

fn handshake(body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_be_bytes();
    let mut out = vec![HANDSHAKE_CLIENT_HELLO, len[1], len[2], len[3]];
    out.extend(body);
    out
}

/// Frame a handshake message into records of at most `size` payload bytes.
fn records(message: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in message.chunks(size) {
        out.extend([CONTENT_HANDSHAKE, 3, 1]);
        out.extend((chunk.len() as u16).to_be_bytes());
        out.extend(chunk);
    }
    out
}

fn parse(buf: &[u8]) -> Result<Option<ClientHello>, HelloError> {
    parse_client_hello(buf, MAX)
}

fn parse_ok(buf: &[u8]) -> ClientHello {
    match parse(buf) {
        Ok(Some(hello)) => hello,
        other => panic!("expected a ClientHello, got {other:?}"),
    }
}

fn parse_err(buf: &[u8]) -> HelloError {
    match parse(buf) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Every strict prefix needs more bytes, the whole is complete (linkerd2-proxy's
/// `check_all_prefixes`).
fn check_all_prefixes(wire: &[u8]) -> ClientHello {
    for end in 0..wire.len() {
        assert_eq!(parse(&wire[..end]), Ok(None), "prefix of {end} bytes");
    }
    parse_ok(wire)
}

// === structure and framing ===

#[test]
fn modern_hello_fields() {
    let wire = Hello::modern().wire();
    let hello = check_all_prefixes(&wire);
    assert_eq!(hello.record_version, 0x0301);
    assert_eq!(hello.legacy_version, 0x0303);
    assert_eq!(hello.cipher_suites, [0x1301, 0x1302, 0xc02b]);
    assert_eq!(hello.extensions, [0x0000, 0x0010, 0x002b, 0x000d, 0x000a]);
    assert_eq!(hello.sni.as_deref(), Some("example.com"));
    assert_eq!(hello.alpn_str(), ["h2", "http/1.1"]);
    assert_eq!(hello.supported_versions, [0x0304, 0x0303]);
    assert_eq!(hello.signature_algorithms, [0x0403, 0x0804]);
    assert_eq!(hello.supported_groups, [0x001d, 0x0017]);
    assert!(hello.offers_tls13());
    assert!(!hello.ech);
    assert_eq!(hello.consumed, wire.len());
}

/// HC-02: the first record's version is ignored (RFC 8446 §5.1), so a hello with an odd one is
/// still a hello with its SNI, never "not TLS".
#[test]
fn any_record_version_is_still_a_hello() {
    for version in [[3, 5], [3, 0xff], [2, 0], [0x7f, 1], [0, 0]] {
        let mut wire = Hello::modern().wire();
        wire[1] = version[0];
        wire[2] = version[1];
        let hello = check_all_prefixes(&wire);
        assert_eq!(hello.sni.as_deref(), Some("example.com"), "{version:?}");
        assert_eq!(hello.record_version, u16::from_be_bytes(version));
    }
}

#[test]
fn tls12_hello_without_extensions() {
    let hello = Hello {
        extensions: None,
        session_id: vec![],
        ..Hello::modern()
    };
    let parsed = check_all_prefixes(&hello.wire());
    assert_eq!(parsed.sni, None);
    assert!(parsed.extensions.is_empty() && parsed.alpn.is_empty());
    assert!(!parsed.offers_tls13());
    // An empty extensions block is also fine.
    let empty = Hello {
        extensions: Some(vec![]),
        ..Hello::modern()
    };
    assert!(parse_ok(&empty.wire()).extensions.is_empty());
}

#[test]
fn reframed_records_give_the_same_hello() {
    let message = Hello::modern().with_ext((0x0015, vec![0; 300])).message();
    let whole = parse_ok(&records(&message, MAX_RECORD_PAYLOAD));
    for size in [1, 2, 3, 4, 5, 50, 511] {
        let wire = records(&message, size);
        let hello = check_all_prefixes(&wire);
        assert_eq!(hello.consumed, wire.len(), "{size}-byte records");
        assert_eq!(
            hello,
            ClientHello {
                consumed: wire.len(),
                ..whole.clone()
            }
        );
    }
}

#[test]
fn coalesced_bytes_after_the_hello_are_not_consumed() {
    let wire = records(&Hello::modern().message(), 50);
    let mut buf = wire.clone();
    // TLS 1.3 middlebox-compat ChangeCipherSpec, then early data, then noise.
    buf.extend([0x14, 3, 3, 0, 1, 1, 0x17, 3, 3, 0, 2, 0xaa, 0xbb, 0xff]);
    assert_eq!(parse_ok(&buf).consumed, wire.len());
}

#[test]
fn non_tls_is_rejected_from_the_first_bytes() {
    for input in [
        &b"G"[..],
        b"GET / HTTP/1.1\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"\x00",
        b"\x15\x03\x03",
    ] {
        assert_eq!(parse_err(input), HelloError::NotTls, "{input:?}");
    }
    // A handshake record is TLS whatever its record version (HC-02): it waits for more.
    assert_eq!(parse(&[0x16, 0x02]), Ok(None));
    assert_eq!(parse(&[0x16, 0x03, 0x05]), Ok(None));
    // PP-07 pp07-badtype: content type 0x99.
    assert_eq!(
        parse_err(b"\x99\x03\x03\x00\x02\x01\x00"),
        HelloError::NotTls
    );
    assert_eq!(parse(&[0x16]), Ok(None));
    assert_eq!(parse(&[0x16, 0x03]), Ok(None));
    assert_eq!(parse(&[0x16, 0x03, 0x00]), Ok(None));
}

#[test]
fn sslv2_compatible_hello() {
    // PE-11 pe11-sslv2.bin
    let sslv2 = b"\x80\x1c\x01\x03\x03\x00\x03\x00\x00\x00\x10\x00\x00\x2fAAAAAAAAAAAAAAAA";
    assert_eq!(parse_err(sslv2), HelloError::Sslv2);
    assert_eq!(parse_err(&sslv2[..3]), HelloError::Sslv2);
    assert_eq!(parse(&sslv2[..2]), Ok(None));
    assert_eq!(parse_err(&[0x80, 0x1c, 0x04]), HelloError::NotTls);
    assert_eq!(HelloError::Sslv2.code(), "client_hello_sslv2");
}

#[test]
fn record_layer_errors() {
    // PP-07 pp07-biglen: record length 0xffff.
    assert_eq!(
        parse_err(b"\x16\x03\x01\xff\xff\x01\x00"),
        HelloError::Malformed("record length")
    );
    assert_eq!(
        parse_err(b"\x16\x03\x01\x00\x00"),
        HelloError::Malformed("record length")
    );
    let over = (MAX_RECORD_PAYLOAD as u16 + 1).to_be_bytes();
    assert_eq!(
        parse_err(&[0x16, 3, 1, over[0], over[1]]),
        HelloError::Malformed("record length")
    );
    // PP-07 pp07-half: half a record is just "need more"; the caller's deadline ends it.
    assert_eq!(parse(b"\x16\x03\x01\x00\x80\x01\x00"), Ok(None));
    // Not a client_hello (server_hello = 2), known from the first handshake byte.
    assert!(matches!(
        parse_err(&[0x16, 3, 1, 0, 4, 2]),
        HelloError::Malformed(_)
    ));
}

#[test]
fn other_record_types_inside_the_hello_are_malformed() {
    let wire = records(&Hello::modern().message(), 50);
    for interloper in [&[0x15u8, 3, 3, 0, 2, 2, 40][..], &[0x15], &[0x17, 3, 3]] {
        let mut buf = wire[..55].to_vec();
        buf.extend(interloper);
        buf.extend(&wire[55..]);
        assert!(
            matches!(parse_err(&buf), HelloError::Malformed(_)),
            "{interloper:?}"
        );
    }
    // A later record with major version 2.
    let mut buf = wire.clone();
    buf[56] = 2;
    assert_eq!(parse_err(&buf), HelloError::Malformed("record version"));
}

#[test]
fn data_after_the_hello_in_its_record_is_malformed() {
    let mut message = Hello::modern().message();
    message.extend([0x14, 0, 0, 0]);
    // 40-byte records put the hello's end inside a record (at 50 it would end on a boundary).
    assert_eq!(Hello::modern().message().len() % 40, 30);
    assert!(matches!(
        parse_err(&records(&message, 40)),
        HelloError::Malformed(_)
    ));
    assert!(matches!(
        parse_err(&records(&message, 16384)),
        HelloError::Malformed(_)
    ));
}

#[test]
fn too_large() {
    let hello = Hello::modern().with_ext((0x0015, vec![0; 10_000]));
    let wire = hello.wire();
    assert_eq!(
        parse_client_hello(&wire, wire.len()).map(|h| h.is_some()),
        Ok(true)
    );
    assert_eq!(
        parse_client_hello(&wire, wire.len() - 1),
        Err(HelloError::TooLarge)
    );
    // Known from the record and handshake headers alone.
    assert_eq!(
        parse_client_hello(&wire[..9], wire.len() - 1),
        Err(HelloError::TooLarge)
    );
    // Record headers count: the same message in 1-byte records needs six times the bytes.
    let small = Hello::modern().message();
    let framed = records(&small, 1);
    assert_eq!(
        parse_client_hello(&framed, small.len() + 5),
        Err(HelloError::TooLarge)
    );
    assert!(parse_client_hello(&framed, framed.len()).is_ok_and(|h| h.is_some()));
    // A declared 16 MiB message over the default cap.
    assert_eq!(
        parse_err(&[0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
        HelloError::TooLarge
    );
    assert_eq!(HelloError::TooLarge.code(), "client_hello_too_large");
}

#[test]
fn hello_body_errors() {
    let long_session = Hello {
        session_id: vec![0; 33],
        ..Hello::modern()
    };
    let no_ciphers = Hello {
        ciphers: vec![],
        ..Hello::modern()
    };
    let no_compression = Hello {
        compression: vec![],
        ..Hello::modern()
    };
    let deflate_only = Hello {
        compression: vec![1],
        ..Hello::modern()
    };
    let duplicate = Hello::modern().with_ext((EXT_SUPPORTED_GROUPS, u16_list(&[0x001d])));
    let psk_first = Hello::modern()
        .with_ext((0x002a, vec![]))
        .with_ext((EXT_PRE_SHARED_KEY, vec![]));
    let mut psk_not_last = psk_first.clone();
    if let Some(exts) = &mut psk_not_last.extensions {
        exts.swap(5, 6);
    }
    for (name, hello) in [
        ("session id", long_session),
        ("ciphers", no_ciphers),
        ("compression", no_compression),
        ("deflate only", deflate_only),
        ("duplicate", duplicate),
        ("psk not last", psk_not_last),
    ] {
        assert!(
            matches!(parse_err(&hello.wire()), HelloError::Malformed(_)),
            "{name}"
        );
    }
    assert!(parse_ok(&psk_first.wire())
        .extensions
        .ends_with(&[EXT_PRE_SHARED_KEY]));
}

#[test]
fn truncated_and_padded_fields_are_malformed() {
    let body = Hello::modern().body();
    // Trailing garbage after the extensions block; a body cut short; an odd cipher list.
    let mut trailing = body.clone();
    trailing.push(0);
    // version (2) + random (32) + session id (1 + 32), then the cipher list length.
    let mut odd = Hello::modern().body();
    odd[68] -= 1;
    for bad in [
        trailing,
        body[..body.len() - 1].to_vec(),
        body[..20].to_vec(),
        odd,
        vec![],
    ] {
        let wire = records(&handshake(&bad), MAX_RECORD_PAYLOAD);
        assert!(matches!(parse_err(&wire), HelloError::Malformed(_)));
    }
    // Extension bodies with lengths that disagree with their content.
    for ext in [
        (EXT_SUPPORTED_VERSIONS, vec![4, 3, 4]),
        (EXT_SUPPORTED_VERSIONS, vec![0]),
        (EXT_SIGNATURE_ALGORITHMS, vec![0, 2, 4, 3, 0]),
        (EXT_SUPPORTED_GROUPS, vec![0, 0]),
        (EXT_ALPN, vec![0, 3, 2, b'h']),
        (EXT_SERVER_NAME, vec![0, 5, 0, 0, 9, b'a', b'b']),
    ] {
        let hello = Hello::modern().without_ext(ext.0).with_ext(ext.clone());
        assert!(
            matches!(parse_err(&hello.wire()), HelloError::Malformed(_)),
            "{ext:?}"
        );
    }
}

// === SNI ===

fn sni_result(name: &[u8]) -> Result<Option<String>, HelloError> {
    let hello = Hello::modern()
        .without_ext(EXT_SERVER_NAME)
        .with_ext(sni_raw(name));
    parse(&hello.wire()).map(|h| h.and_then(|h| h.sni))
}

#[test]
fn acceptable_host_names_are_kept_as_sent() {
    let label63 = "a".repeat(63);
    let name253 = format!("{label63}.{label63}.{label63}.{}", "b".repeat(61));
    for name in [
        "example.com",
        "Example.COM",
        "_acme-challenge.example.com",
        "example.com.",
        "xn--bcher-kva.test",
        "localhost",
        "1.example",
        "a.b.c.d.e.f.g",
        label63.as_str(),
        name253.as_str(),
        &format!("{name253}."),
    ] {
        assert_eq!(sni_result(name.as_bytes()), Ok(Some(name.to_owned())));
    }
}

#[test]
fn bad_host_names() {
    let label64 = format!("{}.test", "a".repeat(64));
    let name254 = format!("{}.{}", "a".repeat(63), "b".repeat(190));
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty host_name"),
        (name254.as_bytes(), "host_name longer than 253 bytes"),
        (label64.as_bytes(), "label longer than 63 bytes"),
        (b"a..b", "empty label"),
        (b".example.com", "empty label"),
        (b"example.com..", "empty label"),
        (b".", "empty label"),
        (b"ok.test\0evil", "NUL byte"),
        (b"ok.test evil", "space"),
        (b"ok.test\nevil", "control character"),
        (b"ok.test\x7f", "control character"),
        ("bücher.test".as_bytes(), "non-ASCII byte"),
        (b"\xff\xfe", "non-ASCII byte"),
        (b"exempt.test/evil", "invalid character"),
        (b"exempt.test:443", "invalid character"),
        (b"*.example.com", "invalid character"),
        (b"127.0.0.1", "IP literal"),
        (b"127.0.0.1.", "IP literal"),
        (b"::1", "IP literal"),
        (b"2001:db8::1", "IP literal"),
        (b"127.1", "IP literal"),
        (b"0x7f.0.0.1", "IP literal"),
        (b"2130706433", "IP literal"),
        (b"example.0x1F", "IP literal"),
    ];
    for (name, reason) in cases {
        assert_eq!(
            sni_result(name),
            Err(HelloError::BadSni(reason)),
            "{name:?}"
        );
    }
    assert_eq!(HelloError::BadSni("x").code(), "bad_sni");
}

#[test]
fn server_name_list_shapes() {
    let two_names = {
        let mut list = vec![0];
        list.extend(prefixed16(b"exempt.test"));
        list.push(0);
        list.extend(prefixed16(b"blocked.test"));
        (EXT_SERVER_NAME, prefixed16(&list))
    };
    let other_type = {
        let mut entry = vec![1];
        entry.extend(prefixed16(b"exempt.test"));
        (EXT_SERVER_NAME, prefixed16(&entry))
    };
    for (ext, reason) in [
        (two_names, "more than one name"),
        (other_type, "unsupported name type"),
        ((EXT_SERVER_NAME, vec![0, 0]), "empty server_name list"),
        ((EXT_SERVER_NAME, vec![]), "empty server_name list"),
    ] {
        let hello = Hello::modern().without_ext(EXT_SERVER_NAME).with_ext(ext);
        assert_eq!(parse_err(&hello.wire()), HelloError::BadSni(reason));
    }
    // Two server_name extensions: a duplicate, whichever names they carry.
    let twice = Hello::modern().with_ext(sni("blocked.test"));
    assert_eq!(
        parse_err(&twice.wire()),
        HelloError::Malformed("duplicate extension")
    );
}

// === ALPN, GREASE, ECH ===

#[test]
fn alpn_lists() {
    let cases: Vec<((u16, Vec<u8>), &str)> = vec![
        ((EXT_ALPN, vec![0, 0]), "empty alpn list"),
        (alpn(&[b"h2", b""]), "empty alpn protocol name"),
        (
            alpn(&vec![&b"x"[..]; MAX_ALPN_PROTOCOLS + 1]),
            "too many alpn protocols",
        ),
    ];
    for (ext, reason) in cases {
        let hello = Hello::modern().without_ext(EXT_ALPN).with_ext(ext);
        assert_eq!(parse_err(&hello.wire()), HelloError::Malformed(reason));
    }
    let long = vec![b'a'; 255];
    let hello = Hello::modern()
        .without_ext(EXT_ALPN)
        .with_ext(alpn(&[&long, b"\xff\x00"]));
    let parsed = parse_ok(&hello.wire());
    assert_eq!(parsed.alpn, [long, vec![0xff, 0]]);
    assert_eq!(parsed.alpn_str()[1], "\u{fffd}\u{0}");
}

#[test]
fn grease_everywhere_is_kept_and_accepted() {
    let hello = Hello {
        ciphers: vec![0x2a2a, 0x1301, 0xfafa],
        extensions: Some(vec![
            (0x0a0a, vec![]),
            sni("ok.test"),
            (EXT_SUPPORTED_VERSIONS, u8_list(&[0x7a7a, 0x0304, 0x0303])),
            (EXT_SUPPORTED_GROUPS, u16_list(&[0x8a8a, 0x001d])),
            (EXT_SIGNATURE_ALGORITHMS, u16_list(&[0x9a9a, 0x0403])),
            (0xdada, vec![0]),
        ]),
        ..Hello::modern()
    };
    let parsed = check_all_prefixes(&hello.wire());
    assert_eq!(parsed.cipher_suites, [0x2a2a, 0x1301, 0xfafa]);
    assert_eq!(
        parsed.extensions,
        [0x0a0a, 0, 0x002b, 0x000a, 0x000d, 0xdada]
    );
    assert_eq!(parsed.supported_versions, [0x7a7a, 0x0304, 0x0303]);
    assert_eq!(parsed.supported_groups, [0x8a8a, 0x001d]);
    assert_eq!(parsed.signature_algorithms, [0x9a9a, 0x0403]);
    assert_eq!(parsed.sni.as_deref(), Some("ok.test"));
    assert!(parsed.offers_tls13());
}

#[test]
fn ech_outer_hello() {
    let hello = Hello::modern()
        .without_ext(EXT_SERVER_NAME)
        .with_ext(sni("ech-public.test"))
        .with_ext(ech_outer());
    let parsed = parse_ok(&hello.wire());
    assert!(parsed.ech);
    assert_eq!(parsed.sni.as_deref(), Some("ech-public.test"));
}

// === captured hellos ===

fn testdata() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .map(|p| {
            let name = p.file_stem().expect("stem").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read testdata"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn captured_hellos() {
    let expected: &[(&str, Option<&str>, &[&str], bool)] = &[
        ("curl-h2", Some("localhost"), &["h2", "http/1.1"], true),
        ("curl-http11", Some("localhost"), &["http/1.1"], true),
        (
            "openssl-alpn",
            Some("example.com"),
            &["h2", "http/1.1"],
            true,
        ),
        ("openssl-nosni", None, &[], true),
        ("openssl-tls12", Some("example.com"), &[], false),
        (
            "python-ssl",
            Some("python.example"),
            &["h2", "http/1.1"],
            true,
        ),
    ];
    let files = testdata();
    assert_eq!(files.len(), expected.len());
    for ((name, wire), (want_name, sni, alpn, tls13)) in files.iter().zip(expected) {
        assert_eq!(name, want_name);
        let hello = check_all_prefixes(wire);
        assert_eq!(hello.sni.as_deref(), *sni, "{name}");
        assert_eq!(hello.alpn_str(), *alpn, "{name}");
        assert_eq!(hello.offers_tls13(), *tls13, "{name}");
        assert_eq!(hello.consumed, wire.len(), "{name}");
        let message = reassemble(
            wire,
            &Framing {
                message_len: wire.len() - 5,
                consumed: wire.len(),
            },
        );
        for size in [1, 50] {
            let reframed = records(&message, size);
            let again = parse_ok(&reframed);
            assert_eq!(
                again,
                ClientHello {
                    consumed: reframed.len(),
                    record_version: 0x0301,
                    ..hello.clone()
                }
            );
        }
    }
}

#[test]
fn captured_hello_ja4() {
    // Cross-checked with an independent Python implementation of JA4.md; the curl value is
    // also the fingerprint published for curl 7.x/8.x on OpenSSL 3.
    let expected = [
        ("curl-h2", "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"),
        ("curl-http11", "t13d3112h1_e8f1e7e78f70_b26ce05bbdd6"),
        ("openssl-alpn", "t13d3111h2_e8f1e7e78f70_1f22a2ca17c4"),
        ("openssl-nosni", "t13i310900_e8f1e7e78f70_1f22a2ca17c4"),
        ("openssl-tls12", "t12d280700_d943125447b4_e7e480e5a997"),
        ("python-ssl", "t13d1812h2_85036bcba153_d41ae481755e"),
    ];
    for ((name, wire), (want_name, ja4)) in testdata().iter().zip(expected) {
        assert_eq!(name, want_name);
        assert_eq!(crate::ja4::ja4(&parse_ok(wire)), ja4, "{name}");
    }
}

/// What rustls' server-side Acceptor makes of the same bytes: `Some((sni, alpn))` on success.
fn rustls_view(wire: &[u8]) -> Option<(Option<String>, Vec<Vec<u8>>)> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = wire;
    while !rest.is_empty() {
        if acceptor.read_tls(&mut rest).ok()? == 0 {
            break;
        }
    }
    let accepted = acceptor.accept().ok()??;
    let hello = accepted.client_hello();
    let alpn = hello
        .alpn()
        .map(|it| it.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    Some((hello.server_name().map(str::to_owned), alpn))
}

/// rustls reports the name lowercased and without a trailing dot; we keep it as sent.
fn as_rustls_sees(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[test]
fn rustls_agrees_on_sni_and_alpn() {
    let mut inputs: Vec<(String, Vec<u8>)> = testdata();
    for size in [1, 50] {
        inputs.push((
            format!("modern/{size}"),
            records(&Hello::modern().message(), size),
        ));
    }
    let ech = Hello::modern().with_ext(ech_outer());
    let grease = Hello {
        ciphers: vec![0x2a2a, 0x1301],
        ..Hello::modern()
    }
    .with_ext((0x0a0a, vec![]))
    .without_ext(EXT_ALPN)
    .with_ext(alpn(&[b"h2", b"\xff\x00", &[b'a'; 255]]));
    let mixed_case = Hello::modern()
        .without_ext(EXT_SERVER_NAME)
        .with_ext(sni("_Acme.Example.COM."));
    for (name, hello) in [("ech", ech), ("grease", grease), ("mixed-case", mixed_case)] {
        inputs.push((name.to_owned(), hello.wire()));
    }
    for (name, wire) in inputs {
        let ours = parse_ok(&wire);
        let (sni, alpn) = rustls_view(&wire).unwrap_or_else(|| panic!("rustls rejected {name}"));
        assert_eq!(ours.sni.as_deref().map(as_rustls_sees), sni, "{name}");
        assert_eq!(ours.alpn, alpn, "{name}");
    }
}

proptest! {
    /// Differential in the spirit of fuzz target F1: corrupt one byte of a captured hello;
    /// whenever both parsers still accept it, they must see the same SNI and ALPN.
    #[test]
    fn rustls_agrees_on_corrupted_hellos(
        file in 0usize..6,
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let files = testdata();
        let mut wire = files[file % files.len()].1.clone();
        let at = index.index(wire.len());
        wire[at] = byte;
        if let (Ok(Some(ours)), Some((sni, alpn))) = (parse(&wire), rustls_view(&wire)) {
            prop_assert_eq!(ours.sni.as_deref().map(as_rustls_sees), sni);
            prop_assert_eq!(ours.alpn, alpn);
        }
    }
}

// === properties (fuzz target F1 in miniature) ===

fn reframe(message: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = message;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        out.extend(records(chunk, MAX_RECORD_PAYLOAD));
        rest = tail;
    }
    out
}

proptest! {
    #[test]
    fn any_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..2048), max in 0usize..4096) {
        if let Ok(Some(hello)) = parse_client_hello(&buf, max) {
            prop_assert!(hello.consumed <= buf.len() && hello.consumed <= max);
        }
    }

    #[test]
    fn tls_shaped_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), size in 1usize..80) {
        let wire = records(&handshake(&body), size);
        if let Ok(Some(hello)) = parse(&wire) {
            prop_assert_eq!(hello.consumed, wire.len());
        }
    }

    #[test]
    fn record_boundaries_do_not_matter(sizes in proptest::collection::vec(1usize..300, 1..8)) {
        let message = Hello::modern().with_ext((0x0015, vec![0; 500])).message();
        let wire = reframe(&message, &sizes);
        let hello = parse_ok(&wire);
        prop_assert_eq!(hello.consumed, wire.len());
        prop_assert_eq!(hello, ClientHello { consumed: wire.len(), ..parse_ok(&Hello::modern().with_ext((0x0015, vec![0; 500])).wire()) });
    }
}
