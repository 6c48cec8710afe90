//! One certificate for a fixed set of names: the admin listener's (security matrix HC-04).
//!
//! The admin listener is reached before anyone has authenticated, so what it does per
//! handshake must not depend on what the client asks for: a certificate minted per SNI would let
//! anyone make the gateway sign any name with the organisation's CA and fill the data path's
//! leaf cache (3,000 names in under 3 s). So the certificate is minted once, for the names the
//! administrator configured (`admin.tls_names`), and served to every client whatever its SNI;
//! a client that asked for another name fails its own verification. It never goes through the
//! [`Minter`]'s cache or counters.
//!
//! It is minted again only when the CA changes (rotation, or a reload that loaded a new CA) or
//! when it nears its end of validity — at most once per such event, whatever the handshake
//! rate. While the CA is unavailable (a reload found it broken) the current certificate keeps
//! serving: it was valid when minted, and the administrator needs the admin API to see why
//! decryption stopped.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};

use crate::mint::{server_cert, LeafName, MintError, Minter};

/// Minted again this close to its notAfter.
const RENEW_BEFORE: Duration = Duration::days(2);

/// The admin listener's certificate resolver: one certificate for `names`, signed by the
/// minter's current CA.
pub struct FixedCert {
    minter: Arc<Minter>,
    names: Vec<LeafName>,
    current: Mutex<Current>,
}

struct Current {
    ca: String,
    key: Arc<CertifiedKey>,
    not_after: OffsetDateTime,
}

// === impl FixedCert ===

impl FixedCert {
    /// Mints the certificate for `names` now (an error stops the caller from listening).
    pub fn new(minter: Arc<Minter>, names: Vec<LeafName>) -> Result<Self, MintError> {
        let current = Current::mint(&minter, &names)?;
        Ok(Self {
            minter,
            names,
            current: Mutex::new(current),
        })
    }

    /// The names the certificate covers.
    pub fn names(&self) -> &[LeafName] {
        &self.names
    }

    /// The certificate to serve now, minted again first if the CA changed or it nears expiry.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let ca = self.minter.ca();
        let stale = current.ca != ca.fingerprint()
            || current.not_after - RENEW_BEFORE <= OffsetDateTime::now_utc();
        if stale && self.minter.unavailable().is_none() {
            match Current::mint(&self.minter, &self.names) {
                Ok(fresh) => *current = fresh,
                Err(e) => {
                    tracing::error!(error = %e, "minting the admin certificate failed; the previous one keeps serving")
                }
            }
        }
        current.key.clone()
    }
}

impl std::fmt::Debug for FixedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedCert")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // The SNI is deliberately not looked at (module doc).
        Some(self.certified_key())
    }
}

impl Current {
    fn mint(minter: &Minter, names: &[LeafName]) -> Result<Self, MintError> {
        let ca = minter.ca();
        let (key, not_after) = server_cert(&ca, names)?;
        Ok(Self {
            ca: ca.fingerprint().to_owned(),
            key,
            not_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::Ca;

    fn minter() -> Arc<Minter> {
        let dir = std::env::temp_dir().join(format!("sluice-fixed-test-{}", rand::random::<u64>()));
        Arc::new(Minter::new(
            Arc::new(Ca::load_or_create(&dir).unwrap()),
            100,
        ))
    }

    #[test]
    fn one_certificate_for_the_names_minted_again_only_for_a_new_ca() {
        let m = minter();
        let names = vec![
            LeafName::Dns("admin.example".into()),
            LeafName::Ip("192.0.2.7".parse().unwrap()),
        ];
        let fixed = FixedCert::new(m.clone(), names).unwrap();
        let a = fixed.certified_key();
        assert!(Arc::ptr_eq(&a, &fixed.certified_key()));
        assert_eq!(m.stats().minted, 0, "the data path's minter is not used");
        assert_eq!(m.stats().cached, 0);
        let (_, cert) = x509_parser::parse_x509_certificate(a.cert[0].as_ref()).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 2);
        let dir = std::env::temp_dir().join(format!("sluice-fixed-test-{}", rand::random::<u64>()));
        m.replace(Arc::new(Ca::load_or_create(&dir).unwrap()));
        let b = fixed.certified_key();
        assert!(!Arc::ptr_eq(&a, &b), "a new CA gets a new certificate");
        m.disable("gone".into());
        assert!(
            Arc::ptr_eq(&b, &fixed.certified_key()),
            "kept while the CA is unavailable"
        );
    }

    #[test]
    fn no_names_is_an_error() {
        assert!(matches!(
            FixedCert::new(minter(), vec![]),
            Err(MintError::NoNames)
        ));
    }
}
