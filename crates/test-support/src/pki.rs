//! A throwaway test PKI built with rcgen: a root ("sluice test root"), an intermediate, an
//! "untrusted" second root, and leaves with the defects the gateway must notice (expired, not
//! yet valid, self-signed, untrusted issuer, wrong name).
//!
//! Everything is written as PEM into a directory the test owns, so the same files serve
//! `openssl verify`, curl (`--cacert`), the gateway (`upstream.extra_roots`) and the in-process
//! origins. Mirrors the shape of `mkpki.sh` (security matrix, Appendix A): the upstream trust
//! anchor is one root, leaves hang off an intermediate, and a chain file is leaf + intermediate.
//!
//! Not covered here (build them in the test that needs them): NUL-in-SAN, tampered signatures,
//! MD5/SHA-1 signatures, name constraints, CRLs.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

/// Common name of the test root, as tests see it in `issuer=` lines.
pub const ROOT_CN: &str = "sluice test root";
/// Common name of the intermediate that issues leaves by default.
pub const INTERMEDIATE_CN: &str = "sluice test intermediate";
/// Common name of the root that nobody trusts (`LeafIssuer::Untrusted`).
pub const UNTRUSTED_ROOT_CN: &str = "sluice untrusted root";

/// The test PKI: two roots and an intermediate, written to a directory.
///
/// Files in `dir`: `root.pem`/`root.key`, `int.pem`/`int.key`, `untrusted-root.pem`/
/// `untrusted-root.key`, and for every leaf `<name>.pem`, `<name>.chain.pem`, `<name>.key`.
pub struct TestPki {
    dir: PathBuf,
    root: Authority,
    intermediate: Authority,
    untrusted: Authority,
    /// File stems already used, so two leaves for the same name do not overwrite each other.
    used_stems: Mutex<Vec<String>>,
}

/// Who signs a leaf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LeafIssuer {
    /// The intermediate (chain: leaf + intermediate). What a well-run server sends.
    #[default]
    Intermediate,
    /// The root directly (chain: leaf only).
    Root,
    /// The leaf signs itself (chain: leaf only). OpenSSL verify error 18.
    SelfSigned,
    /// A root nobody trusts, "sluice untrusted root" (chain: leaf only). OpenSSL error 20/19.
    Untrusted,
    /// Any CA given as PEM files, e.g. the gateway's own `ca/sluice-ca.pem` + `.key` from its
    /// data dir, to build an upstream certificate issued by the gateway CA (chain: leaf only).
    External {
        /// CA certificate (PEM).
        cert_pem: PathBuf,
        /// CA private key (PEM, PKCS#8, SEC1 or PKCS#1).
        key_pem: PathBuf,
    },
}

/// The validity window of a leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday to 30 days from now.
    #[default]
    Current,
    /// 2020-01-01 to 2020-02-01 (OpenSSL verify error 10).
    Expired,
    /// 2099-01-01 to 2099-12-31 (OpenSSL verify error 9).
    NotYetValid,
}

/// The leaf's key type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256 with SHA-256 (fast; the default).
    #[default]
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 (aws-lc-rs generates it; takes ~100 ms).
    Rsa2048,
}

/// How to build a leaf; `LeafOpts::default()` is a valid, intermediate-issued ECDSA leaf.
#[derive(Clone, Debug, Default)]
pub struct LeafOpts {
    /// Who signs it.
    pub issuer: LeafIssuer,
    /// Its validity window.
    pub validity: Validity,
    /// Its key type.
    pub key: KeyType,
}

/// A leaf certificate with its key, as files and as rustls types.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// The names it was issued for (DNS names and IP literals, in order; the first is the CN).
    pub names: Vec<String>,
    /// The leaf alone (PEM).
    pub cert_pem_path: PathBuf,
    /// What a server sends: the leaf, then the intermediate when it has one (PEM).
    pub chain_pem_path: PathBuf,
    /// The private key (PEM, PKCS#8).
    pub key_pem_path: PathBuf,
    /// base64(SHA-256(SubjectPublicKeyInfo)), for `curl --pinnedpubkey sha256//<this>`.
    pub spki_sha256_b64: String,
    /// The leaf (DER).
    pub cert_der: CertificateDer<'static>,
    /// The chain a server sends (DER), leaf first.
    pub chain_der: Vec<CertificateDer<'static>>,
    key_pkcs8: Vec<u8>,
}

/// An intermediate CA made by [`TestPki::issuing_ca`], as files.
#[derive(Clone, Debug)]
pub struct IssuingCa {
    /// The intermediate alone (PEM).
    pub cert_pem_path: PathBuf,
    /// The intermediate followed by the root (PEM): a chain file for `[ca] cert`.
    pub chain_pem_path: PathBuf,
    /// Its private key (PEM, PKCS#8, mode 0600).
    pub key_pem_path: PathBuf,
}

/// A CA: its rcgen issuer (for signing), its certificate, and where its PEM lives.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    pem_path: PathBuf,
}

// === impl TestPki ===

impl TestPki {
    /// Creates the roots and the intermediate and writes them into `dir` (created if missing).
    pub fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create PKI dir {}: {e}", dir.display()));
        let root = Authority::root(dir, "root", ROOT_CN);
        let untrusted = Authority::root(dir, "untrusted-root", UNTRUSTED_ROOT_CN);
        let intermediate = Authority::intermediate(dir, &root);
        Self {
            dir: dir.to_path_buf(),
            root,
            intermediate,
            untrusted,
            used_stems: Mutex::new(Vec::new()),
        }
    }

    /// The directory holding every file of this PKI.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trusted root (PEM): what the gateway gets in `upstream.extra_roots` and what a
    /// client talking to an origin directly (or through a bypass) uses as `--cacert`.
    pub fn root_pem_path(&self) -> &Path {
        &self.root.pem_path
    }

    /// The intermediate (PEM): `openssl verify -untrusted` material.
    pub fn intermediate_pem_path(&self) -> &Path {
        &self.intermediate.pem_path
    }

    /// The untrusted root (PEM), for tests that want to trust it explicitly.
    pub fn untrusted_root_pem_path(&self) -> &Path {
        &self.untrusted.pem_path
    }

    /// The trusted root (DER), for building rustls root stores in process.
    pub fn root_der(&self) -> &CertificateDer<'static> {
        &self.root.cert_der
    }

    /// A further intermediate CA under the trusted root, with a key of type `key`, as an
    /// enterprise would hand it to the gateway for `[ca] cert`/`key`: writes `<stem>.pem` (the
    /// intermediate alone), `<stem>.chain.pem` (the intermediate, then the root) and
    /// `<stem>.key` (PKCS#8, mode 0600, as the gateway requires of a CA key).
    pub fn issuing_ca(&self, stem: &str, key: KeyType) -> IssuingCa {
        use std::os::unix::fs::PermissionsExt as _;
        let key_pair = generate_key(key);
        let mut params = ca_params(
            &format!("sluice test issuing CA {stem}"),
            BasicConstraints::Constrained(0),
        );
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key_pair, &self.root.issuer)
            .unwrap_or_else(|e| panic!("sign issuing CA {stem}: {e}"));
        let cert_pem_path = self.dir.join(format!("{stem}.pem"));
        let chain_pem_path = self.dir.join(format!("{stem}.chain.pem"));
        let key_pem_path = self.dir.join(format!("{stem}.key"));
        let cert_pem = pem("CERTIFICATE", cert.der());
        write(&cert_pem_path, &cert_pem);
        write(
            &chain_pem_path,
            &format!("{cert_pem}{}", pem("CERTIFICATE", &self.root.cert_der)),
        );
        write(&key_pem_path, &key_pair.serialize_pem());
        fs::set_permissions(&key_pem_path, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", key_pem_path.display()));
        IssuingCa {
            cert_pem_path,
            chain_pem_path,
            key_pem_path,
        }
    }

    /// Issues a leaf for `names` (DNS names, wildcards like `*.wild.test`, or IP literals,
    /// which become IP SANs) and writes `<first name>.pem`, `.chain.pem` and `.key`.
    pub fn leaf(&self, names: &[&str], opts: LeafOpts) -> Leaf {
        let key = generate_key(opts.key);
        let params = leaf_params(names, opts.validity);
        let (cert_der, chain_der) = self.sign_leaf(&params, &key, &opts.issuer);
        let stem = self.unique_stem(names.first().copied().unwrap_or("leaf"));
        let cert_pem_path = self.dir.join(format!("{stem}.pem"));
        let chain_pem_path = self.dir.join(format!("{stem}.chain.pem"));
        let key_pem_path = self.dir.join(format!("{stem}.key"));
        write(&cert_pem_path, &pem("CERTIFICATE", &cert_der));
        let chain_pem: String = chain_der.iter().map(|c| pem("CERTIFICATE", c)).collect();
        write(&chain_pem_path, &chain_pem);
        write(&key_pem_path, &key.serialize_pem());
        let spki = Sha256::digest(key.subject_public_key_info());
        Leaf {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            cert_pem_path,
            chain_pem_path,
            key_pem_path,
            spki_sha256_b64: base64::engine::general_purpose::STANDARD.encode(spki),
            cert_der,
            chain_der,
            key_pkcs8: key.serialize_der(),
        }
    }

    /// Signs `params` for `key` as `issuer` says; returns (leaf, chain a server sends).
    fn sign_leaf(
        &self,
        params: &CertificateParams,
        key: &KeyPair,
        issuer: &LeafIssuer,
    ) -> (CertificateDer<'static>, Vec<CertificateDer<'static>>) {
        let signed = match issuer {
            LeafIssuer::Intermediate => params.signed_by(key, &self.intermediate.issuer),
            LeafIssuer::Root => params.signed_by(key, &self.root.issuer),
            LeafIssuer::Untrusted => params.signed_by(key, &self.untrusted.issuer),
            LeafIssuer::SelfSigned => params.self_signed(key),
            LeafIssuer::External { cert_pem, key_pem } => {
                let ca = external_issuer(cert_pem, key_pem);
                params.signed_by(key, &ca)
            }
        };
        let cert = signed.unwrap_or_else(|e| panic!("sign leaf ({issuer:?}): {e}"));
        let leaf = cert.der().clone();
        let mut chain = vec![leaf.clone()];
        if *issuer == LeafIssuer::Intermediate {
            chain.push(self.intermediate.cert_der.clone());
        }
        (leaf, chain)
    }

    /// A file-name-safe stem for `name`, unique within this PKI.
    fn unique_stem(&self, name: &str) -> String {
        let base: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = if base.is_empty() {
            "leaf".to_owned()
        } else {
            base
        };
        let mut used = self.used_stems.lock().expect("PKI stem lock poisoned");
        let mut stem = base.clone();
        let mut n = 2;
        // Names reserved for the CA files must not be reused by a leaf called "root" or "int".
        while used.contains(&stem) || ["root", "int", "untrusted-root"].contains(&stem.as_str()) {
            stem = format!("{base}-{n}");
            n += 1;
        }
        used.push(stem.clone());
        stem
    }
}

// === impl Authority ===

impl Authority {
    fn root(dir: &Path, stem: &str, cn: &str) -> Self {
        let key = generate_key(KeyType::EcdsaP256);
        let params = ca_params(cn, BasicConstraints::Unconstrained);
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("self-sign {cn}: {e}"));
        Self::write(dir, stem, params, key, cert.der().clone())
    }

    fn intermediate(dir: &Path, root: &Self) -> Self {
        let key = generate_key(KeyType::EcdsaP256);
        let mut params = ca_params(INTERMEDIATE_CN, BasicConstraints::Constrained(0));
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &root.issuer)
            .unwrap_or_else(|e| panic!("sign intermediate: {e}"));
        Self::write(dir, "int", params, key, cert.der().clone())
    }

    fn write(
        dir: &Path,
        stem: &str,
        params: CertificateParams,
        key: KeyPair,
        cert_der: CertificateDer<'static>,
    ) -> Self {
        let pem_path = dir.join(format!("{stem}.pem"));
        write(&pem_path, &pem("CERTIFICATE", &cert_der));
        write(&dir.join(format!("{stem}.key")), &key.serialize_pem());
        Self {
            issuer: Issuer::new(params, key),
            cert_der,
            pem_path,
        }
    }
}

// === impl Leaf ===

impl Leaf {
    /// A leaf from PEM files made elsewhere (e.g. the security matrix's `mkpki.sh`, which
    /// makes certificates rcgen refuses to: MD5-signed, v1 intermediates, NUL in a name).
    /// `chain_pem` is what the server sends, leaf first; `key_pem` must be PKCS#8.
    pub fn from_pem_files(names: &[&str], chain_pem: &Path, key_pem: &Path) -> Self {
        use rustls_pki_types::pem::PemObject;
        let chain_der: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain_pem)
            .unwrap_or_else(|e| panic!("read {}: {e}", chain_pem.display()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("parse {}: {e}", chain_pem.display()));
        let key = PrivatePkcs8KeyDer::from_pem_file(key_pem)
            .unwrap_or_else(|e| panic!("read PKCS#8 key {}: {e}", key_pem.display()));
        let cert_der = chain_der.first().cloned().expect("chain has a leaf");
        let spki = x509_parser::parse_x509_certificate(cert_der.as_ref())
            .map(|(_, c)| Sha256::digest(c.public_key().raw).to_vec())
            .unwrap_or_default();
        Self {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            cert_pem_path: chain_pem.to_path_buf(),
            chain_pem_path: chain_pem.to_path_buf(),
            key_pem_path: key_pem.to_path_buf(),
            spki_sha256_b64: base64::engine::general_purpose::STANDARD.encode(spki),
            cert_der,
            chain_der,
            key_pkcs8: key.secret_pkcs8_der().to_vec(),
        }
    }

    /// The private key (PKCS#8 DER).
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }

    /// The chain and key as a rustls `CertifiedKey` (aws-lc-rs signing key).
    pub fn certified_key(&self) -> Arc<rustls::sign::CertifiedKey> {
        let provider = crate::crypto_provider();
        let signing_key = provider
            .key_provider
            .load_private_key(self.key_der())
            .unwrap_or_else(|e| panic!("load key of leaf {:?}: {e}", self.names));
        Arc::new(rustls::sign::CertifiedKey::new(
            self.chain_der.clone(),
            signing_key,
        ))
    }

    /// A rustls server config serving this leaf's chain with the given ALPN protocols.
    pub fn server_config(&self, alpn: &[&str]) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(crate::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(self.chain_der.clone(), self.key_der())
            .unwrap_or_else(|e| panic!("server config for leaf {:?}: {e}", self.names));
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config
    }
}

// === helpers ===

fn generate_key(key: KeyType) -> KeyPair {
    let alg: &'static SignatureAlgorithm = match key {
        KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
    };
    KeyPair::generate_for(alg).unwrap_or_else(|e| panic!("generate {key:?} key: {e}"))
}

fn ca_params(cn: &str, constraints: BasicConstraints) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cn);
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    params
}

fn leaf_params(names: &[&str], validity: Validity) -> CertificateParams {
    let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    // CertificateParams::new turns IP literals into iPAddress SANs and the rest into dNSName.
    let mut params = CertificateParams::new(owned)
        .unwrap_or_else(|e| panic!("leaf names {names:?} are not valid SANs: {e}"));
    params.distinguished_name = common_name(names.first().copied().unwrap_or("sluice test leaf"));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    let (not_before, not_after) = match validity {
        Validity::Current => (now - Duration::days(1), now + Duration::days(30)),
        Validity::Expired => (
            rcgen::date_time_ymd(2020, 1, 1),
            rcgen::date_time_ymd(2020, 2, 1),
        ),
        Validity::NotYetValid => (
            rcgen::date_time_ymd(2099, 1, 1),
            rcgen::date_time_ymd(2099, 12, 31),
        ),
    };
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn external_issuer(cert_pem: &Path, key_pem: &Path) -> Issuer<'static, KeyPair> {
    let cert = fs::read_to_string(cert_pem)
        .unwrap_or_else(|e| panic!("read CA cert {}: {e}", cert_pem.display()));
    let key = fs::read_to_string(key_pem)
        .unwrap_or_else(|e| panic!("read CA key {}: {e}", key_pem.display()));
    let key = KeyPair::from_pem(&key)
        .unwrap_or_else(|e| panic!("parse CA key {}: {e}", key_pem.display()));
    Issuer::from_ca_cert_pem(&cert, key)
        .unwrap_or_else(|e| panic!("parse CA cert {}: {e}", cert_pem.display()))
}

fn pem(tag: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    out
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
