//! Minting leaf certificates for decrypted connections, with a bounded concurrent cache.
//!
//! Each leaf has its own fresh ECDSA P-256 key (cheap to generate, and the CA key is never
//! reused for leaves), a random serial, exactly one SAN (the normalised requested name, or an IP
//! SAN for IP literals — never a copy of the upstream's SAN list), EKU serverAuth and CA:FALSE
//! (security matrix CK-03). The cache is keyed by (name, CA fingerprint) so a new CA never serves
//! stale leaves (CK-05), and concurrent first requests for one name mint once (RL-04): the cache
//! lets one caller compute while the others wait for its value.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

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
}

/// Mints leaves signed by the CA, caching them.
pub struct Minter {
    ca: Arc<Ca>,
    cache: quick_cache::sync::Cache<(LeafName, Arc<str>), Minted>,
    ca_id: Arc<str>,
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
        let ca_id: Arc<str> = ca.fingerprint().into();
        Self {
            ca,
            cache: quick_cache::sync::Cache::new(capacity.max(16)),
            ca_id,
            minted: AtomicU64::new(0),
            mint_nanos: AtomicU64::new(0),
        }
    }

    /// The CA this minter signs with.
    pub fn ca(&self) -> &Arc<Ca> {
        &self.ca
    }

    /// The leaf for `name`, from the cache or freshly minted. Returns whether it was a cache hit.
    pub fn leaf(&self, name: &LeafName) -> Result<(Arc<CertifiedKey>, bool), MintError> {
        let key = (name.clone(), self.ca_id.clone());
        let now = OffsetDateTime::now_utc();
        if let Some(hit) = self.cache.get(&key) {
            if hit.not_after - RENEW_BEFORE > now {
                return Ok((hit.key, true));
            }
            self.cache.remove(&key);
        }
        let minted = self
            .cache
            .get_or_insert_with(&key, || self.mint(name, now))?;
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

    fn mint(&self, name: &LeafName, now: OffsetDateTime) -> Result<Minted, MintError> {
        let started = Instant::now();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        match name {
            LeafName::Dns(dns) => {
                dn.push(DnType::CommonName, dns.as_str());
                params.subject_alt_names = vec![SanType::DnsName(dns.as_str().try_into()?)];
            }
            LeafName::Ip(ip) => {
                dn.push(DnType::CommonName, ip.to_string());
                params.subject_alt_names = vec![SanType::IpAddress(*ip)];
            }
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = now - BACKDATE;
        params.not_after = (now + LEAF_LIFETIME).min(self.ca.not_after());
        let cert = params.signed_by(&key, self.ca.issuer())?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&der)?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing);
        self.minted.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.mint_nanos.fetch_add(nanos, Ordering::Relaxed);
        Ok(Minted {
            key: Arc::new(certified),
            not_after: params.not_after,
        })
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
