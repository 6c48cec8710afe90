//! Hand-built ClientHellos for hostile-input tests (the matrix's `rawch.py`): malformed and
//! duplicate SNI, GREASE everywhere, an ECH outer extension. Real TLS libraries refuse to send
//! most of these, which is why the bytes are assembled here; a well-formed `RawHello` is a
//! valid TLS 1.2/1.3 ClientHello that a real server (the gateway's rustls) answers.

/// `server_name` (RFC 6066 §3).
pub const EXT_SERVER_NAME: u16 = 0x0000;
/// `encrypted_client_hello` (RFC 9849).
pub const EXT_ECH: u16 = 0xfe0d;

/// A ClientHello under construction: cipher suites and extensions in wire order.
#[derive(Clone, Debug)]
pub struct RawHello {
    ciphers: Vec<u16>,
    exts: Vec<(u16, Vec<u8>)>,
}

impl Default for RawHello {
    fn default() -> Self {
        Self::new()
    }
}

impl RawHello {
    /// A TLS 1.3 + 1.2 hello without SNI: X25519 key share, the common signature schemes.
    pub fn new() -> Self {
        // Any 32 bytes other than a low-order point are a usable X25519 public key.
        let key: Vec<u8> = (1..=32u8).map(|b| b.wrapping_mul(37)).collect();
        let mut share = u16_be(0x001d);
        share.extend(prefixed16(&key));
        Self {
            ciphers: vec![0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030],
            exts: vec![
                (0x000b, prefixed8(&[0])),
                (0x000a, prefixed16(&u16_list(&[0x001d, 0x0017]))),
                (0x000d, prefixed16(&u16_list(&[0x0403, 0x0804, 0x0401]))),
                (0x002b, prefixed8(&u16_list(&[0x0304, 0x0303]))),
                (0x002d, prefixed8(&[1])),
                (0x0033, prefixed16(&share)),
            ],
        }
    }

    /// Adds a `server_name` extension naming `name`.
    pub fn sni(self, name: &str) -> Self {
        self.sni_raw(&[name.as_bytes()])
    }

    /// Adds one `server_name` extension carrying every entry of `names` as a host_name, bytes
    /// as given (NUL, LF, over-long labels...).
    pub fn sni_raw(self, names: &[&[u8]]) -> Self {
        let mut list = Vec::new();
        for name in names {
            list.push(0);
            list.extend(prefixed16(name));
        }
        self.ext(EXT_SERVER_NAME, prefixed16(&list))
    }

    /// Adds an extension with raw contents.
    pub fn ext(mut self, ext_type: u16, data: Vec<u8>) -> Self {
        self.exts.push((ext_type, data));
        self
    }

    /// GREASE (RFC 8701) in every place a browser puts it: cipher suites, extensions,
    /// supported groups and versions.
    pub fn grease(mut self) -> Self {
        self.ciphers.insert(0, 0x0a0a);
        for (ty, data) in &mut self.exts {
            match *ty {
                0x000a => *data = prefixed16(&u16_list(&[0x3a3a, 0x001d, 0x0017])),
                0x002b => *data = prefixed8(&u16_list(&[0x4a4a, 0x0304, 0x0303])),
                _ => {}
            }
        }
        self.exts.insert(0, (0x1a1a, Vec::new()));
        self.exts.push((0x2a2a, vec![0]));
        self
    }

    /// An `encrypted_client_hello` extension of the outer type, as a client with an ECH
    /// config sends it: HPKE suite, config id, encapsulated key, and an opaque payload.
    pub fn ech_outer(self) -> Self {
        let mut body = vec![0]; // ECHClientHelloType outer
        body.extend(u16_be(0x0001)); // HKDF-SHA256
        body.extend(u16_be(0x0001)); // AES-128-GCM
        body.push(0x2a); // config_id
        body.extend(prefixed16(&[7; 32]));
        body.extend(prefixed16(&[0x5a; 200]));
        self.ext(EXT_ECH, body)
    }

    /// The handshake message (type + length + body).
    pub fn message(&self) -> Vec<u8> {
        let mut body = u16_be(0x0303);
        body.extend((0..32u8).map(|b| b.wrapping_mul(11)));
        body.extend(prefixed8(&[0x42; 32])); // legacy session id (middlebox compatibility)
        body.extend(prefixed16(&u16_list(&self.ciphers)));
        body.extend([1, 0]); // compression: null
        let mut exts = Vec::new();
        for (ty, data) in &self.exts {
            exts.extend(u16_be(*ty));
            exts.extend(prefixed16(data));
        }
        body.extend(prefixed16(&exts));
        let mut msg = vec![0x01];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    /// The hello in one TLS record.
    pub fn wire(&self) -> Vec<u8> {
        let msg = self.message();
        let mut out = vec![0x16, 0x03, 0x01];
        out.extend(u16_be(msg.len() as u16));
        out.extend(msg);
        out
    }
}

fn u16_be(v: u16) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn u16_list(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn prefixed8(data: &[u8]) -> Vec<u8> {
    let mut out = vec![data.len() as u8];
    out.extend(data);
    out
}

fn prefixed16(data: &[u8]) -> Vec<u8> {
    let mut out = u16_be(data.len() as u16);
    out.extend(data);
    out
}
