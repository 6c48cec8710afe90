//! Pure, sans-I/O ClientHello parser: turns the first bytes a client sends on a CONNECT tunnel
//! into a [`ClientHello`] summary (SNI, ALPN, versions and the JA4 inputs), or says that more
//! bytes are needed, or that the bytes will never be a valid ClientHello.
//!
//! It reassembles a handshake message fragmented over many TLS records (even 1-byte records) and
//! stops at the record that completes the ClientHello; bytes after it are left to the caller.
//! Parsing is strict and bounded: every length is checked, nothing panics, and heap use is
//! bounded by a small multiple of `max_len`.
//!
//! It does not read sockets, apply policy, normalise host names (case, trailing dot, IDNA) or
//! decide what happens to a rejected client; see `peek` for the async shell.

use std::borrow::Cow;
use std::net::IpAddr;

/// Default cap on the bytes (records included) a ClientHello may occupy on the wire.
///
/// Post-quantum key shares make real hellos 1.7 KB and more; 64 KiB leaves room for any
/// legitimate client while bounding what one connection can make the gateway buffer.
pub const DEFAULT_MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Largest record payload accepted: 2^14 + 256 bytes.
///
/// RFC 8446 §5.1 limits plaintext records to 2^14 bytes; we accept up to the §5.2 ciphertext
/// ceiling so a slightly sloppy client is not cut off, and reject anything beyond as malformed.
pub const MAX_RECORD_PAYLOAD: usize = (1 << 14) + 256;

/// Most ALPN protocol names accepted in one ClientHello.
///
/// Real clients offer a handful; the cap keeps the per-name allocations of [`ClientHello::alpn`]
/// proportional to the message instead of 30x it for a list of 1-byte names.
pub const MAX_ALPN_PROTOCOLS: usize = 64;

/// Extension type `server_name` (RFC 6066 §3).
pub const EXT_SERVER_NAME: u16 = 0x0000;
/// Extension type `supported_groups` (RFC 8446 §4.2.7).
pub const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
/// Extension type `signature_algorithms` (RFC 8446 §4.2.3).
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
/// Extension type `application_layer_protocol_negotiation` (RFC 7301 §3.1).
pub const EXT_ALPN: u16 = 0x0010;
/// Extension type `pre_shared_key` (RFC 8446 §4.2.11).
pub const EXT_PRE_SHARED_KEY: u16 = 0x0029;
/// Extension type `supported_versions` (RFC 8446 §4.2.1).
pub const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
/// Extension type `encrypted_client_hello` (RFC 9849).
pub const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;

/// TLS 1.3 as it appears in `supported_versions` (RFC 8446 §4.2.1).
pub const TLS13: u16 = 0x0304;

/// Record content type `handshake` (RFC 8446 §5.1).
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type `client_hello` (RFC 8446 §4).
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Longest DNS name in presentation form, without the trailing dot (RFC 1035 §2.3.4).
const MAX_HOST_NAME: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

/// What a complete ClientHello told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// `legacy_record_version` of the first record.
    pub record_version: u16,
    /// `legacy_version` (`client_version` before TLS 1.3) of the ClientHello.
    pub legacy_version: u16,
    /// Cipher suites in wire order, GREASE included.
    pub cipher_suites: Vec<u16>,
    /// Extension types in wire order, GREASE included.
    pub extensions: Vec<u16>,
    /// Validated `host_name` as sent (ASCII, case and any trailing dot kept); `None` without a
    /// `server_name` extension.
    pub sni: Option<String>,
    /// ALPN protocol names in the client's order.
    pub alpn: Vec<Vec<u8>>,
    /// Versions from `supported_versions`, GREASE included; empty without the extension.
    pub supported_versions: Vec<u16>,
    /// Signature schemes from `signature_algorithms`, in wire order.
    pub signature_algorithms: Vec<u16>,
    /// Named groups from `supported_groups`, in wire order.
    pub supported_groups: Vec<u16>,
    /// Whether `encrypted_client_hello` is present: the SNI is then only the public name.
    pub ech: bool,
    /// Bytes of the input taken by the records that carry the ClientHello.
    pub consumed: usize,
}

/// Why the bytes will never be a usable ClientHello.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum HelloError {
    /// The client did not start a TLS handshake (plain HTTP, an SSH banner, noise).
    #[error("client did not send TLS")]
    NotTls,
    /// An SSLv2-compatible ClientHello, which the gateway refuses.
    #[error("client sent an SSLv2-compatible ClientHello")]
    Sslv2,
    /// The ClientHello needs more than `max_len` bytes on the wire.
    #[error("ClientHello exceeds the size limit")]
    TooLarge,
    /// The record or handshake structure is invalid; the reason names the part.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// The `server_name` extension is well-formed but its name is unacceptable.
    #[error("invalid SNI: {0}")]
    BadSni(&'static str),
}

/// Where the ClientHello ends once its records are all present.
struct Framing {
    /// Length of the handshake message, header included.
    message_len: usize,
    /// Wire bytes of the records carrying it.
    consumed: usize,
}

/// Handshake bytes seen while walking records, enough to know type and length early.
struct HandshakeHead {
    bytes: [u8; HANDSHAKE_HEADER_LEN],
    filled: usize,
}

/// Bounds-checked cursor over a byte slice; every read names what it was reading.
struct Reader<'a> {
    buf: &'a [u8],
}

/// Parse the client's first flight.
///
/// Returns `Ok(None)` while more bytes are needed, `Ok(Some(hello))` once the records carrying
/// a complete ClientHello are in `buf` (later bytes are ignored and not counted in
/// [`ClientHello::consumed`]), and `Err` as soon as the bytes cannot become a valid ClientHello
/// of at most `max_len` wire bytes. The first 1–3 bytes suffice to reject non-TLS input.
pub fn parse_client_hello(buf: &[u8], max_len: usize) -> Result<Option<ClientHello>, HelloError> {
    if !check_first_bytes(buf)? {
        return Ok(None);
    }
    let Some(framing) = scan_records(buf, max_len)? else {
        return Ok(None);
    };
    let message = reassemble(buf, &framing);
    let mut hello = parse_message(&message)?;
    // `scan_records` only returns a framing after reading a whole first record header.
    hello.record_version = u16::from_be_bytes([buf[1], buf[2]]);
    hello.consumed = framing.consumed;
    Ok(Some(hello))
}

/// Whether `value` is a GREASE value (RFC 8701 §2: 0x0a0a, 0x1a1a, …, 0xfafa).
pub fn is_grease(value: u16) -> bool {
    let [hi, lo] = value.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

// === impl ClientHello ===

impl ClientHello {
    /// Whether the client offers TLS 1.3, which is only done via `supported_versions`
    /// (RFC 8446 §4.2.1).
    pub fn offers_tls13(&self) -> bool {
        self.supported_versions.contains(&TLS13)
    }

    /// ALPN names as strings, with invalid UTF-8 replaced (for logs, not for decisions).
    pub fn alpn_str(&self) -> Vec<String> {
        self.alpn
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect()
    }
}

// === impl HelloError ===

impl HelloError {
    /// Stable reason code for the access log and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotTls => "non_tls",
            Self::Sslv2 => "client_hello_sslv2",
            Self::TooLarge => "client_hello_too_large",
            Self::Malformed(_) => "client_hello_malformed",
            Self::BadSni(_) => "bad_sni",
        }
    }
}

// === record layer ===

/// Decide from the first bytes whether this can be TLS at all; `Ok(false)` = need more.
fn check_first_bytes(buf: &[u8]) -> Result<bool, HelloError> {
    let Some(&first) = buf.first() else {
        return Ok(false);
    };
    if first == CONTENT_HANDSHAKE {
        return Ok(true);
    }
    // An SSLv2 record has a 2-byte header with the high bit set, then the message type;
    // CLIENT-HELLO is 1 (draft-hickman-netscape-ssl-00, RFC 6101 Appendix E.1).
    if first & 0x80 != 0 {
        return match buf.get(2) {
            None => Ok(false),
            Some(&HANDSHAKE_CLIENT_HELLO) => Err(HelloError::Sslv2),
            Some(_) => Err(HelloError::NotTls),
        };
    }
    Err(HelloError::NotTls)
}

/// Check a (possibly partial) record header; `first` marks the record that starts the input.
fn check_record_header(header: &[u8], first: bool) -> Result<(), HelloError> {
    if let Some(&content_type) = header.first() {
        // RFC 8446 §5.1: handshake messages MUST NOT be interleaved with other record types.
        if content_type != CONTENT_HANDSHAKE {
            return Err(HelloError::Malformed(
                "non-handshake record inside ClientHello",
            ));
        }
    }
    // The record version never tells TLS from noise: RFC 8446 §5.1 says legacy_record_version
    // "MUST be ignored for all purposes", and a hello with an odd one is still a hello its
    // server may answer. Classing it as non-TLS would relay it raw under `non_tls = "tunnel"`,
    // past the SNI decision (issue 12 item 2, HC-02): a handshake record is decided on its SNI
    // whatever its version. Only the later records of one hello must look like TLS records.
    if !first {
        if let Some(&major) = header.get(1) {
            if major != 3 {
                return Err(HelloError::Malformed("record version"));
            }
        }
    }
    Ok(())
}

/// Walk record headers until the records hold the whole ClientHello; copies nothing.
fn scan_records(buf: &[u8], max_len: usize) -> Result<Option<Framing>, HelloError> {
    let mut pos = 0;
    let mut head = HandshakeHead::new();
    let mut seen = 0; // handshake bytes in the records before `pos`
    loop {
        let header = buf.get(pos..).unwrap_or_default();
        let header = &header[..header.len().min(RECORD_HEADER_LEN)];
        check_record_header(header, pos == 0)?;
        if header.len() < RECORD_HEADER_LEN {
            return Ok(None);
        }
        let record_len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        // RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
        if record_len == 0 || record_len > MAX_RECORD_PAYLOAD {
            return Err(HelloError::Malformed("record length"));
        }
        let start = pos + RECORD_HEADER_LEN;
        let end = start + record_len;
        let available = buf.get(start..end.min(buf.len())).unwrap_or_default();
        head.fill(available);
        let message_len = head.message_len()?;
        check_size(end, start, message_len.map(|m| m - seen), max_len)?;
        if end > buf.len() {
            return Ok(None);
        }
        seen += record_len;
        pos = end;
        if let Some(message_len) = message_len {
            if seen >= message_len {
                return finish_framing(seen, message_len, pos);
            }
        }
    }
}

/// Fail with `TooLarge` once the least the ClientHello can still take exceeds `max_len`.
///
/// Every record walked so far is needed (the hello is not complete before it), and once the
/// length is known, so is every remaining handshake byte after `start`.
fn check_size(
    record_end: usize,
    start: usize,
    remaining: Option<usize>,
    max_len: usize,
) -> Result<(), HelloError> {
    let at_least = match remaining {
        Some(remaining) => record_end.max(start.saturating_add(remaining)),
        None => record_end,
    };
    if at_least > max_len {
        return Err(HelloError::TooLarge);
    }
    Ok(())
}

fn finish_framing(
    seen: usize,
    message_len: usize,
    consumed: usize,
) -> Result<Option<Framing>, HelloError> {
    // RFC 8446 §5.1: a message preceding a key change must end at a record boundary, and
    // nothing else may follow the ClientHello in the client's first handshake flight.
    if seen > message_len {
        return Err(HelloError::Malformed(
            "data after ClientHello in its record",
        ));
    }
    Ok(Some(Framing {
        message_len,
        consumed,
    }))
}

/// The handshake message bytes, borrowed when one record carries it all. The indexing relies on
/// `scan_records` having checked every record header and length up to `framing.consumed`.
fn reassemble<'a>(buf: &'a [u8], framing: &Framing) -> Cow<'a, [u8]> {
    let first_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if first_len == framing.message_len {
        return Cow::Borrowed(&buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + first_len]);
    }
    // `scan_records` checked message_len against max_len, so this allocation is bounded.
    let mut message = Vec::with_capacity(framing.message_len);
    let mut pos = 0;
    while pos < framing.consumed {
        let record_len = usize::from(u16::from_be_bytes([buf[pos + 3], buf[pos + 4]]));
        let start = pos + RECORD_HEADER_LEN;
        message.extend_from_slice(&buf[start..start + record_len]);
        pos = start + record_len;
    }
    Cow::Owned(message)
}

// === impl HandshakeHead ===

impl HandshakeHead {
    fn new() -> Self {
        Self {
            bytes: [0; HANDSHAKE_HEADER_LEN],
            filled: 0,
        }
    }

    fn fill(&mut self, fragment: &[u8]) {
        let take = (HANDSHAKE_HEADER_LEN - self.filled).min(fragment.len());
        self.bytes[self.filled..self.filled + take].copy_from_slice(&fragment[..take]);
        self.filled += take;
    }

    /// Total message length (header included) once known; rejects other message types early.
    fn message_len(&self) -> Result<Option<usize>, HelloError> {
        if self.filled >= 1 && self.bytes[0] != HANDSHAKE_CLIENT_HELLO {
            return Err(HelloError::Malformed(
                "first handshake message is not a ClientHello",
            ));
        }
        if self.filled < HANDSHAKE_HEADER_LEN {
            return Ok(None);
        }
        let [_, a, b, c] = self.bytes;
        let body_len = u32::from_be_bytes([0, a, b, c]) as usize;
        Ok(Some(HANDSHAKE_HEADER_LEN + body_len))
    }
}

// === handshake message ===

/// Parse a complete ClientHello handshake message (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).
fn parse_message(message: &[u8]) -> Result<ClientHello, HelloError> {
    let mut r = Reader::new(message.get(HANDSHAKE_HEADER_LEN..).unwrap_or_default());
    let legacy_version = r.u16("legacy_version")?;
    r.take(32, "random")?;
    let session_id = r.u8_prefixed("legacy_session_id")?;
    if session_id.len() > 32 {
        return Err(HelloError::Malformed("legacy_session_id"));
    }
    let cipher_suites = u16_list(r.u16_prefixed("cipher_suites")?, "cipher_suites")?;
    // RFC 5246 §7.4.1.2: the list MUST contain null(0); RFC 8446 §4.1.2 makes it exactly that.
    if !r.u8_prefixed("legacy_compression_methods")?.contains(&0) {
        return Err(HelloError::Malformed("legacy_compression_methods"));
    }
    let mut hello = ClientHello {
        record_version: 0,
        legacy_version,
        cipher_suites,
        extensions: Vec::new(),
        sni: None,
        alpn: Vec::new(),
        supported_versions: Vec::new(),
        signature_algorithms: Vec::new(),
        supported_groups: Vec::new(),
        ech: false,
        consumed: 0,
    };
    // RFC 5246 §7.4.1.2: a TLS 1.2 hello may end after the compression methods.
    if !r.is_empty() {
        let extensions = r.u16_prefixed("extensions")?;
        r.finish("trailing data after extensions")?;
        parse_extensions(extensions, &mut hello)?;
    }
    Ok(hello)
}

/// Record extension types, reject duplicates, then read the ones the gateway needs.
fn parse_extensions(data: &[u8], hello: &mut ClientHello) -> Result<(), HelloError> {
    let mut r = Reader::new(data);
    let mut bodies = Vec::new();
    while !r.is_empty() {
        let ext_type = r.u16("extension type")?;
        let body = r.u16_prefixed("extension length")?;
        hello.extensions.push(ext_type);
        bodies.push((ext_type, body));
    }
    check_extension_order(&hello.extensions)?;
    for (ext_type, body) in bodies {
        parse_extension(ext_type, body, hello)?;
    }
    Ok(())
}

fn check_extension_order(types: &[u16]) -> Result<(), HelloError> {
    // RFC 8446 §4.2: no more than one extension of the same type. Sorting a copy keeps this
    // O(n log n) for hellos with thousands of extensions.
    let mut sorted = types.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(HelloError::Malformed("duplicate extension"));
    }
    // RFC 8446 §4.2.11: pre_shared_key MUST be the last extension in the ClientHello.
    if let Some(index) = types.iter().position(|&t| t == EXT_PRE_SHARED_KEY) {
        if index + 1 != types.len() {
            return Err(HelloError::Malformed(
                "pre_shared_key is not the last extension",
            ));
        }
    }
    Ok(())
}

fn parse_extension(ext_type: u16, body: &[u8], hello: &mut ClientHello) -> Result<(), HelloError> {
    match ext_type {
        EXT_SERVER_NAME => hello.sni = Some(parse_server_name(body)?),
        EXT_ALPN => hello.alpn = parse_alpn(body)?,
        EXT_SUPPORTED_VERSIONS => {
            // RFC 8446 §4.2.1: ProtocolVersion versions<2..254>.
            let mut r = Reader::new(body);
            let list = r.u8_prefixed("supported_versions")?;
            r.finish("supported_versions")?;
            hello.supported_versions = u16_list(list, "supported_versions")?;
        }
        EXT_SIGNATURE_ALGORITHMS => {
            hello.signature_algorithms = u16_vector(body, "signature_algorithms")?;
        }
        EXT_SUPPORTED_GROUPS => hello.supported_groups = u16_vector(body, "supported_groups")?,
        EXT_ENCRYPTED_CLIENT_HELLO => hello.ech = true,
        _ => {}
    }
    Ok(())
}

/// A whole extension body that is one `u16`-prefixed, non-empty list of `u16`
/// (RFC 8446 §4.2.3 and §4.2.7).
fn u16_vector(body: &[u8], what: &'static str) -> Result<Vec<u16>, HelloError> {
    let mut r = Reader::new(body);
    let list = r.u16_prefixed(what)?;
    r.finish(what)?;
    u16_list(list, what)
}

/// A non-empty list of big-endian `u16`.
fn u16_list(list: &[u8], what: &'static str) -> Result<Vec<u16>, HelloError> {
    if list.is_empty() || list.len() % 2 != 0 {
        return Err(HelloError::Malformed(what));
    }
    Ok(list
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect())
}

/// RFC 7301 §3.1: `ProtocolName protocol_name_list<2..2^16-1>`, each name `<1..2^8-1>`.
fn parse_alpn(body: &[u8]) -> Result<Vec<Vec<u8>>, HelloError> {
    let mut r = Reader::new(body);
    let mut list = Reader::new(r.u16_prefixed("alpn")?);
    r.finish("alpn")?;
    if list.is_empty() {
        return Err(HelloError::Malformed("empty alpn list"));
    }
    let mut names = Vec::new();
    while !list.is_empty() {
        let name = list.u8_prefixed("alpn protocol name")?;
        if name.is_empty() {
            return Err(HelloError::Malformed("empty alpn protocol name"));
        }
        if names.len() == MAX_ALPN_PROTOCOLS {
            return Err(HelloError::Malformed("too many alpn protocols"));
        }
        names.push(name.to_vec());
    }
    Ok(names)
}

/// RFC 6066 §3: `ServerName server_name_list<1..2^16-1>`; we accept exactly one entry, of
/// type host_name(0), since the list MUST NOT hold two names of one type and no other type is
/// defined — a second or unknown entry is how "first of many" bypasses start.
fn parse_server_name(body: &[u8]) -> Result<String, HelloError> {
    let mut r = Reader::new(body);
    if r.is_empty() {
        return Err(HelloError::BadSni("empty server_name list"));
    }
    let mut list = Reader::new(r.u16_prefixed("server_name")?);
    r.finish("server_name")?;
    if list.is_empty() {
        return Err(HelloError::BadSni("empty server_name list"));
    }
    if list.u8("server_name type")? != 0 {
        return Err(HelloError::BadSni("unsupported name type"));
    }
    let name = list.u16_prefixed("host_name")?;
    if !list.is_empty() {
        return Err(HelloError::BadSni("more than one name"));
    }
    validate_host_name(name).map(str::to_owned)
}

/// Accept a host name only in the form every later check compares (ASCII LDH plus `_`), so a
/// name can never match a rule in one form and reach a different host in another.
fn validate_host_name(name: &[u8]) -> Result<&str, HelloError> {
    if name.is_empty() {
        return Err(HelloError::BadSni("empty host_name"));
    }
    // RFC 6066 §3: literal IPv4 and IPv6 addresses are not permitted in HostName. Checked
    // first so `::1` is reported as what it is rather than as a bad character.
    if std::str::from_utf8(name).is_ok_and(|text| text.parse::<IpAddr>().is_ok()) {
        return Err(HelloError::BadSni("IP literal"));
    }
    for &byte in name {
        check_host_byte(byte)?;
    }
    let text = std::str::from_utf8(name).map_err(|_| HelloError::BadSni("non-ASCII byte"))?;
    // A single trailing dot (absolute name) is kept as sent; the policy normalises it.
    let body = text.strip_suffix('.').unwrap_or(text);
    if body.len() > MAX_HOST_NAME {
        return Err(HelloError::BadSni("host_name longer than 253 bytes"));
    }
    for label in body.split('.') {
        if label.is_empty() {
            return Err(HelloError::BadSni("empty label"));
        }
        if label.len() > MAX_LABEL {
            return Err(HelloError::BadSni("label longer than 63 bytes"));
        }
    }
    if ends_in_number(body) {
        return Err(HelloError::BadSni("IP literal"));
    }
    Ok(text)
}

fn check_host_byte(byte: u8) -> Result<(), HelloError> {
    match byte {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => Ok(()),
        0 => Err(HelloError::BadSni("NUL byte")),
        b' ' => Err(HelloError::BadSni("space")),
        0x01..=0x1f | 0x7f => Err(HelloError::BadSni("control character")),
        0x80..=0xff => Err(HelloError::BadSni("non-ASCII byte")),
        _ => Err(HelloError::BadSni("invalid character")),
    }
}

/// Whether a resolver or URL parser could read `name` as an IPv4 address although `IpAddr`
/// does not (`127.1`, `0x7f.1`, `2130706433`): the WHATWG URL host parser's "ends in a number"
/// rule. RFC 3696 §2 rules out all-numeric TLDs, so no real host name is lost.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

// === impl Reader ===

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if n > self.buf.len() {
            return Err(HelloError::Malformed(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let bytes = self.take(2, what)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u8_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let len = self.u8(what)?;
        self.take(usize::from(len), what)
    }

    fn u16_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// Require that nothing is left: trailing bytes inside a length-delimited field are an
    /// error, not something to skip (RFC 8446 §4: decode_error).
    fn finish(&self, what: &'static str) -> Result<(), HelloError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(HelloError::Malformed(what))
        }
    }
}

#[cfg(test)]
mod tests;
