//! Minting leaf certificates for decrypted connections, with a bounded concurrent cache.
//!
//! Each leaf has its own fresh ECDSA P-256 key (cheap to generate, and the CA key is never
//! reused for leaves), a random serial, exactly one SAN (the normalised requested name, or an IP
//! SAN for IP literals — never a copy of the upstream's SAN list), EKU serverAuth and CA:FALSE
//! (security matrix CK-03). The cache is keyed by (name, CA fingerprint) so a new CA never serves
//! stale leaves (CK-05), and concurrent first requests for one name mint once (RL-04): the cache
//! lets one caller compute while the others wait for its value.
//!
//! The CA can change under a running gateway: a rotation or a reload swaps it in (and the cache
//! forgets every leaf of the old one), and a reload that finds the CA unusable (key removed,
//! unreadable or corrupt) disables minting, so decrypting connections fail closed instead of
//! going on with a key the administrator took away (security matrix FT-05).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::ca::{random_serial, Ca};

/// How long a minted leaf is valid (and how far back it is dated, for client clock skew).
const LEAF_LIFETIME: Duration = Duration::days(30);
const BACKDATE: Duration = Duration::days(1);
/// A cached leaf this close to expiry is minted again.
const RENEW_BEFORE: Duration = Duration::days(2);

/// The name a leaf is minted for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LeafName {
    /// A normalised DNS name (lowercase A-labels, no trailing dot).
    Dns(String),
    /// An IP literal (CONNECT to an address without SNI).
    Ip(IpAddr),
}

/// Why minting failed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// rcgen refused the parameters or signing failed.
    #[error("minting a leaf failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls could not load the generated key.
    #[error("loading the minted key failed: {0}")]
    Key(#[from] rustls::Error),
    /// The CA is unusable since the last reload; nothing is minted until it is fixed.
    #[error("the CA is unavailable: {0}")]
    CaUnavailable(String),
    /// [`server_cert`] was given no name.
    #[error("no names to put in the certificate")]
    NoNames,
}

impl MintError {
    /// Stable reason code for logs and metrics.
    pub fn code(&self) -> &'static str {
        "mint_failed"
    }
}

#[derive(Clone)]
struct Minted {
    key: Arc<CertifiedKey>,
    not_after: OffsetDateTime,
    /// notAfter came from the origin's certificate, not the leaf lifetime: renewing it early
    /// would give the same date again.
    capped: bool,
}

/// The CA in use and the id its leaves are cached under.
struct Signer {
    ca: Arc<Ca>,
    id: Arc<str>,
}

/// Mints leaves signed by the CA, caching them.
pub struct Minter {
    signer: ArcSwap<Signer>,
    /// Why minting is disabled, while it is.
    unavailable: ArcSwapOption<String>,
    cache: quick_cache::sync::Cache<(LeafName, Arc<str>), Minted>,
    minted: AtomicU64,
    mint_nanos: AtomicU64,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct MintStats {
    /// Leaves minted since start.
    pub minted: u64,
    /// Total time spent minting, nanoseconds.
    pub mint_nanos: u64,
    /// Leaves currently cached.
    pub cached: u64,
}

// === impl Minter ===

impl Minter {
    /// A minter with room for `capacity` cached leaves.
    pub fn new(ca: Arc<Ca>, capacity: usize) -> Self {
        Self {
            signer: ArcSwap::from_pointee(Signer::new(ca)),
            unavailable: ArcSwapOption::empty(),
            cache: quick_cache::sync::Cache::new(capacity.max(16)),
            minted: AtomicU64::new(0),
            mint_nanos: AtomicU64::new(0),
        }
    }

    /// The CA this minter signs with: the last one that loaded, also while minting is
    /// disabled, so the admin pages keep showing which CA clients are asked to trust.
    pub fn ca(&self) -> Arc<Ca> {
        self.signer.load().ca.clone()
    }

    /// Signs with `ca` from now on, re-enables minting, and drops every cached leaf.
    pub fn replace(&self, ca: Arc<Ca>) {
        self.signer.store(Arc::new(Signer::new(ca)));
        self.unavailable.store(None);
        self.cache.clear();
    }

    /// Stops minting (every `leaf` call fails with [`MintError::CaUnavailable`]) and drops the
    /// cached leaves, whose keys the gateway should no longer use either.
    pub fn disable(&self, why: String) {
        self.unavailable.store(Some(Arc::new(why)));
        self.cache.clear();
    }

    /// Why minting is disabled, if it is.
    pub fn unavailable(&self) -> Option<Arc<String>> {
        self.unavailable.load_full()
    }

    /// The leaf for `name`, from the cache or freshly minted. Returns whether it was a cache hit.
    pub fn leaf(&self, name: &LeafName) -> Result<(Arc<CertifiedKey>, bool), MintError> {
        self.leaf_until(name, None)
    }

    /// [`Minter::leaf`] for an origin whose certificate expires at `cap`: the leaf never
    /// outlives it (security matrix CK-03), so a client never trusts the gateway's leaf for
    /// longer than it would have trusted the origin's own certificate.
    pub fn leaf_until(
        &self,
        name: &LeafName,
        cap: Option<OffsetDateTime>,
    ) -> Result<(Arc<CertifiedKey>, bool), MintError> {
        if let Some(why) = self.unavailable.load().as_deref() {
            return Err(MintError::CaUnavailable(why.to_string()));
        }
        let signer = self.signer.load_full();
        let key = (name.clone(), signer.id.clone());
        let now = OffsetDateTime::now_utc();
        if let Some(hit) = self.cache.get(&key) {
            let fresh = hit.not_after - RENEW_BEFORE > now || (hit.capped && hit.not_after > now);
            let fits = cap.is_none_or(|cap| hit.not_after <= cap);
            if fresh && fits {
                return Ok((hit.key, true));
            }
            self.cache.remove(&key);
        }
        let minted = self
            .cache
            .get_or_insert_with(&key, || self.mint(&signer.ca, name, now, cap))?;
        Ok((minted.key, false))
    }

    /// Counters for metrics.
    pub fn stats(&self) -> MintStats {
        MintStats {
            minted: self.minted.load(Ordering::Relaxed),
            mint_nanos: self.mint_nanos.load(Ordering::Relaxed),
            cached: self.cache.len() as u64,
        }
    }

    fn mint(
        &self,
        ca: &Ca,
        name: &LeafName,
        now: OffsetDateTime,
        cap: Option<OffsetDateTime>,
    ) -> Result<Minted, MintError> {
        let started = Instant::now();
        let lifetime = (now + LEAF_LIFETIME).min(ca.not_after());
        let capped = cap.is_some_and(|cap| cap < lifetime);
        let not_after = cap.map_or(lifetime, |cap| cap.min(lifetime));
        let key = sign_leaf(ca, std::slice::from_ref(name), now, not_after)?;
        self.minted.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.mint_nanos.fetch_add(nanos, Ordering::Relaxed);
        Ok(Minted {
            key,
            not_after,
            capped,
        })
    }
}

/// A certificate for a fixed set of names (the admin listener's `admin.tls_names`), signed by
/// `ca` and sent with its chain, valid for the usual leaf lifetime. It never touches a
/// [`Minter`]'s cache or counters: those belong to the data path. Returns it and its notAfter.
pub fn server_cert(
    ca: &Ca,
    names: &[LeafName],
) -> Result<(Arc<CertifiedKey>, OffsetDateTime), MintError> {
    if names.is_empty() {
        return Err(MintError::NoNames);
    }
    let now = OffsetDateTime::now_utc();
    let not_after = (now + LEAF_LIFETIME).min(ca.not_after());
    Ok((sign_leaf(ca, names, now, not_after)?, not_after))
}

/// Whether a leaf signed by `ca`, sent with [`Ca::served_chain`], verifies up to
/// [`Ca::trust_der`] as a client that trusts only that certificate would see it (signatures,
/// CA flags, path length, validity, EKU): a chain file in the wrong order or with a foreign
/// certificate is refused when loaded instead of failing every client.
pub(crate) fn check_chain(ca: &Ca) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier as _;
    let name = LeafName::Dns("chain-check.sluice.invalid".into());
    let now = OffsetDateTime::now_utc();
    let not_after = (now + Duration::hours(1)).min(ca.not_after());
    let leaf =
        sign_leaf(ca, std::slice::from_ref(&name), now, not_after).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.trust_der().clone())
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let server_name = rustls_pki_types::ServerName::try_from("chain-check.sluice.invalid")
        .map_err(|e| e.to_string())?;
    let intermediates = leaf.cert.get(1..).unwrap_or_default();
    verifier
        .verify_server_cert(
            &leaf.cert[0],
            intermediates,
            &server_name,
            &[],
            rustls_pki_types::UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Signs a leaf for `names` (the first is the CN) with a fresh ECDSA P-256 key; the result
/// carries `ca`'s chain after the leaf.
fn sign_leaf(
    ca: &Ca,
    names: &[LeafName],
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Arc<CertifiedKey>, MintError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for (i, name) in names.iter().enumerate() {
        let san = match name {
            LeafName::Dns(dns) => {
                if i == 0 {
                    dn.push(DnType::CommonName, dns.as_str());
                }
                SanType::DnsName(dns.as_str().try_into()?)
            }
            LeafName::Ip(ip) => {
                if i == 0 {
                    dn.push(DnType::CommonName, ip.to_string());
                }
                SanType::IpAddress(*ip)
            }
        };
        params.subject_alt_names.push(san);
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params.not_before = now - BACKDATE;
    params.not_after = not_after;
    let cert = params.signed_by(&key, ca.issuer())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&der)?;
    // RFC 8446 §4.4.2: the leaf first, then the certificates that certify it.
    let mut chain = Vec::with_capacity(1 + ca.served_chain().len());
    chain.push(cert.der().clone());
    chain.extend(ca.served_chain().iter().cloned());
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

impl Signer {
    fn new(ca: Arc<Ca>) -> Self {
        let id = ca.fingerprint().into();
        Self { ca, id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minter() -> Minter {
        let dir = std::env::temp_dir().join(format!("sluice-mint-test-{}", rand::random::<u64>()));
        Minter::new(Arc::new(Ca::load_or_create(&dir).unwrap()), 100)
    }

    #[test]
    fn leaf_has_one_san_and_is_cached() {
        let m = minter();
        let name = LeafName::Dns("www.example.com".into());
        let (a, hit_a) = m.leaf(&name).unwrap();
        let (b, hit_b) = m.leaf(&name).unwrap();
        assert!(!hit_a && hit_b);
        assert!(Arc::ptr_eq(&a, &b));
        let (_, cert) = x509_parser::parse_x509_certificate(a.cert[0].as_ref()).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 1);
        assert!(!cert.is_ca());
        assert_ne!(
            cert.public_key().raw,
            x509_parser::parse_x509_certificate(m.ca().cert_der().as_ref())
                .unwrap()
                .1
                .public_key()
                .raw
        );
        assert_eq!(m.stats().minted, 1);
    }

    #[test]
    fn a_new_ca_never_serves_cached_leaves_and_a_disabled_one_mints_nothing() {
        let m = minter();
        let name = LeafName::Dns("www.example.com".into());
        let (old, _) = m.leaf(&name).unwrap();
        let dir = std::env::temp_dir().join(format!("sluice-mint-test-{}", rand::random::<u64>()));
        let next = Arc::new(Ca::load_or_create(&dir).unwrap());
        m.replace(next.clone());
        let (new, hit) = m.leaf(&name).unwrap();
        assert!(!hit && !Arc::ptr_eq(&old, &new));
        assert_eq!(m.ca().fingerprint(), next.fingerprint());
        m.disable("key removed".into());
        let err = m.leaf(&name).err().unwrap();
        assert!(matches!(err, MintError::CaUnavailable(_)));
        assert_eq!(err.code(), "mint_failed");
        assert_eq!(
            m.unavailable().as_deref().map(String::as_str),
            Some("key removed")
        );
        m.replace(next);
        assert!(m.leaf(&name).is_ok() && m.unavailable().is_none());
    }

    #[test]
    fn a_leaf_never_outlives_the_origin_certificate() {
        let m = minter();
        let name = LeafName::Dns("soon.example.com".into());
        let (long, _) = m.leaf(&name).unwrap();
        let cap = OffsetDateTime::now_utc() + Duration::days(3);
        let (short, hit) = m.leaf_until(&name, Some(cap)).unwrap();
        assert!(!hit && !Arc::ptr_eq(&long, &short));
        let (_, cert) = x509_parser::parse_x509_certificate(short.cert[0].as_ref()).unwrap();
        let not_after = cert.validity().not_after.to_datetime();
        assert!(not_after <= cap && not_after > cap - Duration::seconds(2));
        // The capped leaf serves this origin, and an origin valid for longer, from the cache.
        assert!(m.leaf_until(&name, Some(cap)).unwrap().1);
        assert!(m.leaf(&name).unwrap().1);
    }

    #[test]
    fn ip_literal_gets_ip_san() {
        let m = minter();
        let (leaf, _) = m.leaf(&LeafName::Ip("127.0.0.1".parse().unwrap())).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.cert[0].as_ref()).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(matches!(
            san.value.general_names[0],
            x509_parser::extensions::GeneralName::IPAddress(_)
        ));
    }

    #[test]
    fn concurrent_first_requests_mint_once() {
        let m = Arc::new(minter());
        let name = LeafName::Dns("storm.example.com".into());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (m, name) = (m.clone(), name.clone());
                std::thread::spawn(move || m.leaf(&name).unwrap())
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.stats().minted, 1);
    }
}
