//! The gateway's certificate authority: created on first run in the data dir, or loaded from
//! an administrator's files (e.g. an enterprise intermediate, RSA or ECDSA).
//!
//! An administrator's `[ca] cert` may be a chain file: the issuing certificate (whose key is
//! `[ca] key`) first, then the certificates that certify it, up to and optionally including the
//! enterprise root (security matrix HC-10). Minted leaves are sent with that chain (RFC 8446
//! §4.4.2: the sender's certificate first, each following one certifying the one before it; a
//! self-signed root "MAY be omitted", and is, since the client must already have it), and what
//! devices are told to trust ([`Ca::trust_pem`]) is the last certificate of the file: the root.
//! A chain whose links do not verify is refused at load, with the file named.
//!
//! Security properties this module owns (security matrix CK-01, CK-02, FT-05):
//! - every install generates its own key; nothing is embedded in the binary;
//! - the key file is written with mode 0600 inside a 0700 directory, and a key that is group- or
//!   world-readable is refused at load time;
//! - a half-present CA (certificate without key or the reverse) is an error, never silently
//!   replaced by a new CA, because clients already trust the old one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// File name of the CA certificate inside `<data-dir>/ca/`.
pub const CA_CERT_FILE: &str = "sluice-ca.pem";
/// File name of the CA private key inside `<data-dir>/ca/`.
pub const CA_KEY_FILE: &str = "sluice-ca.key";

/// Why the CA could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing a CA file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file can be read by other users.
    #[error(
        "{path}: CA key is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Only one of certificate and key exists.
    #[error("{present} exists but {missing} does not; refusing to generate a replacement CA that clients would not trust (restore the file or remove both)")]
    HalfPresent {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The certificate or key could not be parsed.
    #[error("{path}: {message}")]
    Parse {
        /// The file concerned.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Generating or signing failed.
    #[error("CA generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A loaded CA: its certificate and the key that signs minted leaves.
pub struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    cert_path: PathBuf,
    /// Sent after every minted leaf: the issuing certificate and the rest of the chain file,
    /// without a trailing self-signed root (empty for a self-signed CA).
    served_chain: Vec<CertificateDer<'static>>,
    /// What devices must trust: the last certificate of the chain file.
    trust_der: CertificateDer<'static>,
    trust_pem: String,
    /// Whether [`Self::trust_der`] is self-signed (a root), not just the top of a partial chain.
    trust_is_root: bool,
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
    fingerprint: String,
}

// === impl Ca ===

impl Ca {
    /// Loads `<dir>/ca/sluice-ca.{pem,key}`, creating a new CA there if neither file exists.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, CaError> {
        let dir = data_dir.join("ca");
        let cert = dir.join(CA_CERT_FILE);
        let key = dir.join(CA_KEY_FILE);
        finish_rotation(&cert, &key)?;
        match (cert.exists(), key.exists()) {
            (true, true) => Self::load(&cert, &key),
            (false, false) => {
                create_private_dir(&dir)?;
                generate(&cert, &key)?;
                Self::load(&cert, &key)
            }
            (true, false) => Err(CaError::HalfPresent {
                present: cert,
                missing: key,
            }),
            (false, true) => Err(CaError::HalfPresent {
                present: key,
                missing: cert,
            }),
        }
    }

    /// Replaces the data dir's generated CA with a new one (security matrix CK-05): the new
    /// pair is written beside the current one, the current key is overwritten with zeros, then
    /// the new files take the current names. A crash part-way is completed on the next start
    /// ([`Ca::load_or_create`]), so the old key never survives a rotation that began.
    pub fn rotate(data_dir: &Path) -> Result<Self, CaError> {
        let dir = data_dir.join("ca");
        let cert = dir.join(CA_CERT_FILE);
        let key = dir.join(CA_KEY_FILE);
        let (next_cert, next_key) = (next_of(&cert), next_of(&key));
        generate(&next_cert, &next_key)?;
        // Refuse to destroy anything unless the new pair loads.
        Self::load(&next_cert, &next_key)?;
        finish_rotation(&cert, &key)?;
        Self::load(&cert, &key)
    }

    /// Loads an existing CA certificate and key (PEM; PKCS#8, SEC1 or PKCS#1 keys). The
    /// certificate file may go on with the issuing certificate's chain (module doc).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        check_key_permissions(key_path)?;
        let cert_pem = read_to_string(cert_path)?;
        let key_pem = read_to_string(key_path)?;
        let parse = |message: String| CaError::Parse {
            path: cert_path.into(),
            message,
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| parse(format!("no certificate: {e}")))?;
        let Some(cert_der) = chain.first().cloned() else {
            return Err(parse(
                "no certificate: the file holds no CERTIFICATE block".into(),
            ));
        };
        let key_der =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| CaError::Parse {
                path: key_path.into(),
                message: format!("no private key: {e}"),
            })?;
        let key = KeyPair::try_from(&key_der).map_err(|e| CaError::Parse {
            path: key_path.into(),
            message: format!("unsupported key: {e}"),
        })?;
        let links = chain
            .iter()
            .map(|c| inspect(c).map_err(&parse))
            .collect::<Result<Vec<_>, _>>()?;
        // A key that does not belong to the certificate would mint leaves no client can
        // verify; refuse it here rather than fail every handshake later.
        if key.public_key_raw() != links[0].public_key.as_slice() {
            return Err(CaError::Parse {
                path: key_path.into(),
                message: format!(
                    "this key does not belong to the CA certificate {} (the first certificate \
                     of the file must be the one that issues leaves)",
                    cert_path.display()
                ),
            });
        }
        check_links(&links).map_err(&parse)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CaError::Parse {
            path: cert_path.into(),
            message: format!("cannot use as issuer: {e}"),
        })?;
        let fingerprint = hex::encode(Sha256::digest(cert_der.as_ref()));
        // Leaves never outlive any certificate of the chain they are sent with.
        let not_after = links
            .iter()
            .map(|l| l.not_after)
            .min()
            .unwrap_or(links[0].not_after);
        let trust_is_root = links.last().is_some_and(|l| l.self_signed);
        let trust_der = chain.last().cloned().unwrap_or_else(|| cert_der.clone());
        let mut served_chain = chain;
        if trust_is_root {
            served_chain.pop();
        }
        let ca = Self {
            cert_pem: pem_of(&cert_der),
            cert_der,
            cert_path: cert_path.to_path_buf(),
            trust_pem: pem_of(&trust_der),
            trust_der,
            trust_is_root,
            served_chain,
            issuer,
            not_after,
            fingerprint,
        };
        crate::mint::check_chain(&ca).map_err(|e| {
            parse(format!(
                "a leaf signed with this CA does not verify up to the last certificate of \
                 the file ({e}); [ca] cert must hold the issuing certificate, then its chain \
                 in order"
            ))
        })?;
        Ok(ca)
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate, PEM (certificate only: never key material).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificates sent after a minted leaf (RFC 8446 §4.4.2 order): the issuing
    /// certificate and its intermediates, without a self-signed root. Empty for a self-signed
    /// CA, whose certificate the client already trusts.
    pub fn served_chain(&self) -> &[CertificateDer<'static>] {
        &self.served_chain
    }

    /// What devices must trust, DER: the root at the end of a chain file, else the CA itself.
    pub fn trust_der(&self) -> &CertificateDer<'static> {
        &self.trust_der
    }

    /// [`Self::trust_der`] as PEM (certificate only).
    pub fn trust_pem(&self) -> &str {
        &self.trust_pem
    }

    /// Whether `[ca] cert` is a chain: what devices trust is then not the issuing certificate.
    pub fn is_chain(&self) -> bool {
        self.trust_der != self.cert_der
    }

    /// Whether [`Self::trust_der`] is a self-signed root; `false` when a chain file stops at
    /// an intermediate (devices must then trust the enterprise root, which sluice never saw).
    pub fn trust_is_root(&self) -> bool {
        self.trust_is_root
    }

    /// Where the certificate was loaded from.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// SHA-256 fingerprint of the certificate, lowercase hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// End of the CA's validity; minted leaves never outlive it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

fn generate(cert_path: &Path, key_path: &Path) -> Result<(), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let id: [u8; 4] = rand::random();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("sluice CA {}", hex::encode(id)));
    dn.push(DnType::OrganizationName, "sluice gateway");
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key)?;
    // The key goes first: a certificate without its key would be refused on the next start.
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_public(cert_path, cert.pem().as_bytes())
}

/// Where a rotation writes the new file for `path` until it takes its place.
fn next_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

/// Completes a rotation whose new pair is on disk: destroys the current key, moves the new
/// files into place. A new pair that does not load is left over from a failed write and is
/// removed instead.
fn finish_rotation(cert: &Path, key: &Path) -> Result<(), CaError> {
    let (next_cert, next_key) = (next_of(cert), next_of(key));
    if !next_cert.exists() && !next_key.exists() {
        return Ok(());
    }
    if Ca::load(&next_cert, &next_key).is_err() {
        let _ = fs::remove_file(&next_cert);
        let _ = fs::remove_file(&next_key);
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaError::Io { path, source }
    };
    if let Ok(mut old) = fs::OpenOptions::new().write(true).open(key) {
        // Overwrite in place: a rename alone would leave the old key's bytes on disk.
        let len = old.metadata().map_err(io(key))?.len();
        old.write_all(&vec![0u8; usize::try_from(len).unwrap_or(0)])
            .map_err(io(key))?;
        old.sync_all().map_err(io(key))?;
    }
    fs::rename(&next_key, key).map_err(io(key))?;
    fs::rename(&next_cert, cert).map_err(io(cert))?;
    if let Some(parent) = key.parent() {
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// A positive random serial of 16 bytes (RFC 5280 §4.1.2.2 allows up to 20 octets).
pub(crate) fn random_serial() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// What [`Ca::load`] needs of each certificate of the file.
struct Link {
    not_after: OffsetDateTime,
    is_ca: bool,
    public_key: Vec<u8>,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    self_signed: bool,
}

fn inspect(der: &CertificateDer<'_>) -> Result<Link, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    let subject = cert.subject().as_raw().to_vec();
    let issuer = cert.issuer().as_raw().to_vec();
    Ok(Link {
        not_after: cert.validity().not_after.to_datetime(),
        is_ca,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        self_signed: subject == issuer,
        subject,
        issuer,
    })
}

/// Every certificate is a CA, each is issued by the next (by name; the signatures are checked
/// by [`crate::mint::check_chain`]), and nothing follows a self-signed root.
fn check_links(links: &[Link]) -> Result<(), String> {
    for (i, link) in links.iter().enumerate() {
        let nth = i + 1;
        if !link.is_ca {
            return Err(if i == 0 {
                "certificate is not a CA (basicConstraints CA:TRUE missing)".into()
            } else {
                format!(
                    "certificate {nth} of the chain is not a CA (basicConstraints CA:TRUE missing)"
                )
            });
        }
        let Some(next) = links.get(i + 1) else {
            break;
        };
        if link.self_signed {
            return Err(format!(
                "certificate {nth} is a self-signed root, yet more certificates follow it; the \
                 root, if present, must be last"
            ));
        }
        if link.issuer != next.subject {
            return Err(format!(
                "certificate {} is not the issuer of certificate {nth}; [ca] cert must hold the \
                 issuing certificate, then its chain in order",
                nth + 1
            ));
        }
    }
    Ok(())
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every 64-byte chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn check_key_permissions(path: &Path) -> Result<(), CaError> {
    let meta = fs::metadata(path).map_err(|source| CaError::Io {
        path: path.into(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CaError::KeyPermissions {
            path: path.into(),
            mode,
        });
    }
    Ok(())
}

fn read_to_string(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.into(),
        source,
    })
}

/// Creates `dir` and any missing parent with mode 0700, and makes `dir` itself 0700 whatever
/// the umask (an existing one included: it holds the CA key).
pub fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |source| CaError::Io {
        path: dir.into(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    write_file(path, bytes, 0o600)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    write_file(path, bytes, 0o644)
}

/// Writes via a temporary file, fsync and rename, so a crash never leaves a torn CA file.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.into(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_with_private_key_mode() {
        let dir = std::env::temp_dir().join(format!("sluice-ca-test-{}", rand::random::<u64>()));
        let ca = Ca::load_or_create(&dir).unwrap();
        let key = dir.join("ca").join(CA_KEY_FILE);
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(dir.join("ca")).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(!ca.cert_pem().contains("PRIVATE KEY"));
        let again = Ca::load_or_create(&dir).unwrap();
        assert_eq!(ca.fingerprint(), again.fingerprint());
        let other_dir = dir.join("other");
        let other = Ca::load_or_create(&other_dir).unwrap();
        assert_ne!(ca.fingerprint(), other.fingerprint());
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Ca::load_or_create(&dir),
            Err(CaError::KeyPermissions { .. })
        ));
        fs::remove_file(&key).unwrap();
        assert!(matches!(
            Ca::load_or_create(&dir),
            Err(CaError::HalfPresent { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_replaces_the_pair_and_destroys_the_old_key() {
        let dir = std::env::temp_dir().join(format!("sluice-ca-test-{}", rand::random::<u64>()));
        let old = Ca::load_or_create(&dir).unwrap();
        let key = dir.join("ca").join(CA_KEY_FILE);
        let old_key = fs::read(&key).unwrap();
        let new = Ca::rotate(&dir).unwrap();
        assert_ne!(old.fingerprint(), new.fingerprint());
        assert_ne!(fs::read(&key).unwrap(), old_key);
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            Ca::load_or_create(&dir).unwrap().fingerprint(),
            new.fingerprint()
        );
        let leftovers: Vec<_> = fs::read_dir(dir.join("ca")).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
        // A rotation interrupted after writing the new pair is completed at the next start.
        let cert = dir.join("ca").join(CA_CERT_FILE);
        generate(&next_of(&cert), &next_of(&key)).unwrap();
        let pending = Ca::load(&next_of(&cert), &next_of(&key)).unwrap();
        let started = Ca::load_or_create(&dir).unwrap();
        assert_eq!(started.fingerprint(), pending.fingerprint());
        assert!(!next_of(&key).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_from_another_ca_is_refused() {
        let dir = std::env::temp_dir().join(format!("sluice-ca-test-{}", rand::random::<u64>()));
        Ca::load_or_create(&dir.join("a")).unwrap();
        Ca::load_or_create(&dir.join("b")).unwrap();
        let cert = dir.join("a/ca").join(CA_CERT_FILE);
        let err = Ca::load(&cert, &dir.join("b/ca").join(CA_KEY_FILE))
            .err()
            .unwrap();
        assert!(err.to_string().contains("does not belong"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A root and an intermediate it signed, as PEM; the intermediate's key (0600) in `dir`.
    fn enterprise(dir: &Path, rsa: bool) -> (String, String, PathBuf) {
        fs::create_dir_all(dir).unwrap();
        let ca_params = |cn: &str| {
            let mut p = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p
        };
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let root_params = ca_params("enterprise root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let alg = if rsa {
            &rcgen::PKCS_RSA_SHA256
        } else {
            &rcgen::PKCS_ECDSA_P256_SHA256
        };
        let int_key = KeyPair::generate_for(alg).unwrap();
        let int = ca_params("enterprise issuing CA")
            .signed_by(&int_key, &root_issuer)
            .unwrap();
        let key = dir.join("int.key");
        write_private(&key, int_key.serialize_pem().as_bytes()).unwrap();
        (int.pem(), root.pem(), key)
    }

    #[test]
    fn a_chain_file_sends_the_intermediate_and_trusts_the_root() {
        for rsa in [false, true] {
            let dir = tempfile_dir();
            let (int, root, key) = enterprise(&dir, rsa);
            let chain = dir.join("chain.pem");
            fs::write(&chain, format!("{int}{root}")).unwrap();
            let ca = Ca::load(&chain, &key).unwrap();
            assert!(ca.is_chain() && ca.trust_is_root());
            let root_der = CertificateDer::from_pem_slice(root.as_bytes()).unwrap();
            let int_der = CertificateDer::from_pem_slice(int.as_bytes()).unwrap();
            assert_eq!(ca.trust_der(), &root_der);
            assert_eq!(ca.trust_pem(), pem_of(&root_der));
            assert_eq!(ca.served_chain(), std::slice::from_ref(&int_der));
            assert_eq!(ca.cert_der(), &int_der);

            // The intermediate alone: sent, and the top of what sluice knows.
            let alone = dir.join("int.pem");
            fs::write(&alone, &int).unwrap();
            let ca = Ca::load(&alone, &key).unwrap();
            assert!(!ca.is_chain() && !ca.trust_is_root());
            assert_eq!(ca.served_chain(), std::slice::from_ref(&int_der));

            // Wrong order, or a root that did not issue the intermediate: refused.
            let reversed = dir.join("reversed.pem");
            fs::write(&reversed, format!("{root}{int}")).unwrap();
            let err = Ca::load(&reversed, &key).err().unwrap().to_string();
            assert!(err.contains("first certificate"), "{err}");
            let (_, other_root, _) = enterprise(&dir.join("other"), false);
            let foreign = dir.join("foreign.pem");
            fs::write(&foreign, format!("{int}{other_root}")).unwrap();
            let err = Ca::load(&foreign, &key).err().unwrap().to_string();
            assert!(
                err.contains("does not verify") || err.contains("not the issuer"),
                "{err}"
            );
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_generated_ca_sends_no_chain() {
        let dir = tempfile_dir();
        let ca = Ca::load_or_create(&dir).unwrap();
        assert!(ca.served_chain().is_empty());
        assert!(!ca.is_chain() && ca.trust_is_root());
        assert_eq!(ca.trust_pem(), ca.cert_pem());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        std::env::temp_dir().join(format!("sluice-ca-test-{}", rand::random::<u64>()))
    }
}
