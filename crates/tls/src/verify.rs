//! Upstream TLS: the client configurations sluice uses to connect to origins, and the mapping
//! of every upstream failure to a stable reason code.
//!
//! Trust is the curated Mozilla root set (webpki-roots) plus the administrator's
//! `upstream.extra_roots` — not whatever the OS store happens to hold, and never the gateway's
//! own minting CA (security matrix UC-03, UC-10). Verification always names a target: the SNI
//! when the client sent one, else the CONNECT host, IP literals included (UC-11). There is no
//! insecure mode and no fallback to weaker versions (TD-01, TD-03): rustls offers TLS 1.2 and
//! 1.3 with AEAD suites only.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::Resumption;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The ALPN protocols sluice can serve once decrypted.
pub const H2: &[u8] = b"h2";
/// HTTP/1.1's ALPN id.
pub const HTTP11: &[u8] = b"http/1.1";

/// Why the upstream configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    /// An extra root file could not be read.
    #[error("upstream.extra_roots: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An extra root file held no usable certificate.
    #[error("upstream.extra_roots: {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A CRL file could not be read or held no CRL.
    #[error("upstream.crls: {path}: {message}")]
    Crl {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

/// Which ALPN protocols to offer upstream (the intersection of the client's offer with what
/// sluice can serve).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlpnOffer {
    /// h2 and http/1.1.
    H2AndHttp11,
    /// http/1.1 only.
    Http11,
    /// h2 only.
    H2,
    /// No ALPN extension.
    None,
}

impl AlpnOffer {
    /// The offer for a client's ALPN list.
    pub fn from_client(alpn: &[Vec<u8>]) -> Self {
        let h2 = alpn.iter().any(|p| p == H2);
        let h1 = alpn.iter().any(|p| p == HTTP11);
        match (h2, h1) {
            (true, true) => Self::H2AndHttp11,
            (true, false) => Self::H2,
            (false, true) => Self::Http11,
            (false, false) => Self::None,
        }
    }

    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Self::H2AndHttp11 => vec![H2.to_vec(), HTTP11.to_vec()],
            Self::H2 => vec![H2.to_vec()],
            Self::Http11 => vec![HTTP11.to_vec()],
            Self::None => vec![],
        }
    }
}

/// Shared upstream client configurations, one per ALPN offer (each with its own resumption
/// cache, so repeat connections to an origin resume instead of doing full handshakes).
pub struct UpstreamTls {
    configs: [Arc<ClientConfig>; 4],
    roots: usize,
    /// Raw issuer names of the configured CRLs: revocation was really checked for a
    /// certificate only when its own issuer's CRL is among them.
    crl_issuers: HashSet<Vec<u8>>,
}

// === impl UpstreamTls ===

impl UpstreamTls {
    /// Builds the configurations from the Mozilla roots plus `extra_roots` PEM files, checking
    /// revocation against the `crls` files (PEM or DER). A certificate whose issuer has no CRL
    /// among them is accepted: revocation status unknown, the documented default (matrix
    /// UC-08), since failing closed would break every site whose CA the admin has no CRL for.
    pub fn new(extra_roots: &[PathBuf], crls: &[PathBuf]) -> Result<Self, RootsError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in extra_roots {
            for der in read_roots(path)? {
                roots.add(der).map_err(|e| RootsError::Invalid {
                    path: path.clone(),
                    message: format!("not a usable trust anchor: {e}"),
                })?;
            }
        }
        let count = roots.len();
        let mut lists = Vec::new();
        for path in crls {
            lists.extend(read_crls(path)?);
        }
        let crl_issuers = lists
            .iter()
            .filter_map(|crl| {
                x509_parser::parse_x509_crl(crl.as_ref())
                    .ok()
                    .map(|(_, crl)| crl.issuer().as_raw().to_vec())
            })
            .collect();
        let mut builder = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots));
        if !lists.is_empty() {
            builder = builder.with_crls(lists).allow_unknown_revocation_status();
        }
        let webpki = builder.build().map_err(|e| RootsError::Invalid {
            path: PathBuf::from("<roots>"),
            message: e.to_string(),
        })?;
        let verifier = Arc::new(ClassifyingVerifier {
            inner: webpki,
            known: KnownIntermediates::default(),
        });
        let provider = Arc::new(upstream_provider());
        let make = |offer: AlpnOffer| {
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|_| unreachable!("aws-lc-rs supports TLS 1.2 and 1.3"))
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth();
            config.alpn_protocols = offer.protocols();
            config.resumption = Resumption::in_memory_sessions(4096);
            Arc::new(config)
        };
        Ok(Self {
            configs: [
                make(AlpnOffer::H2AndHttp11),
                make(AlpnOffer::Http11),
                make(AlpnOffer::H2),
                make(AlpnOffer::None),
            ],
            roots: count,
            crl_issuers,
        })
    }

    /// Whether a CRL from the issuer of a certificate (its raw issuer name,
    /// [`CertSummary::issuer_der`]) is configured: only then was its revocation status
    /// actually looked up, else it is unknown (issue 12 item 12).
    pub fn crl_covers(&self, issuer_der: &[u8]) -> bool {
        self.crl_issuers.contains(issuer_der)
    }

    /// The configuration for an ALPN offer.
    pub fn config(&self, offer: AlpnOffer) -> Arc<ClientConfig> {
        let i = match offer {
            AlpnOffer::H2AndHttp11 => 0,
            AlpnOffer::Http11 => 1,
            AlpnOffer::H2 => 2,
            AlpnOffer::None => 3,
        };
        self.configs[i].clone()
    }

    /// Number of trust anchors loaded.
    pub fn root_count(&self) -> usize {
        self.roots
    }
}

fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, RootsError> {
    let bytes = std::fs::read(path).map_err(|source| RootsError::Io {
        path: path.into(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RootsError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(RootsError::Invalid {
            path: path.into(),
            message: "no PEM certificate".into(),
        });
    }
    Ok(certs)
}

/// Every CRL in a file: PEM (`X509 CRL` blocks) or one DER CRL.
fn read_crls(
    path: &Path,
) -> Result<Vec<rustls_pki_types::CertificateRevocationListDer<'static>>, RootsError> {
    use rustls_pki_types::CertificateRevocationListDer as Crl;
    let bytes = std::fs::read(path).map_err(|e| RootsError::Crl {
        path: path.into(),
        message: e.to_string(),
    })?;
    let invalid = |message: String| RootsError::Crl {
        path: path.into(),
        message,
    };
    if bytes.first() == Some(&0x30) {
        return Ok(vec![Crl::from(bytes)]);
    }
    let crls = Crl::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if crls.is_empty() {
        return Err(invalid("no CRL (PEM `X509 CRL` or DER)".into()));
    }
    Ok(crls)
}

/// aws-lc-rs with AES-128-GCM/SHA-256 preferred for TLS 1.3: as strong in practice, and its
/// SHA-256 key schedule uses the SHA instructions most server CPUs have where SHA-384 does not
/// (BENCHMARKS.md). Key exchange keeps the provider's default (hybrid post-quantum first).
fn upstream_provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
        _ => 2,
    });
    provider
}

/// A certificate validation failure, classified more precisely than webpki's error (a
/// self-signed leaf and a missing intermediate both surface as "unknown issuer"), with the
/// presented leaf summarised for the access log.
#[derive(Debug)]
pub struct CertFailure {
    /// Stable reason code.
    pub code: &'static str,
    /// The leaf the origin presented.
    pub leaf: Option<CertSummary>,
    /// webpki's verdict.
    pub source: rustls::Error,
}

impl std::fmt::Display for CertFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.source)
    }
}

impl std::error::Error for CertFailure {}

/// The webpki verifier with full validation; only its error is refined. This is *not* a
/// relaxation: every decision is webpki's (`dangerous()` is only the API to install a
/// wrapper).
#[derive(Debug)]
struct ClassifyingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    known: KnownIntermediates,
}

/// Subjects of the intermediates seen in chains that verified: what lets "the origin did not
/// send the intermediate" be told apart from "nobody knows this issuer" when a leaf arrives
/// alone (as browsers that cache intermediates do). Bounded; it only ever refines a reason
/// code, never a verdict.
#[derive(Debug, Default)]
struct KnownIntermediates(Mutex<HashSet<Vec<u8>>>);

/// Most intermediate subjects remembered (the web has a few thousand intermediates).
const KNOWN_INTERMEDIATES: usize = 8192;

impl KnownIntermediates {
    fn learn(&self, intermediates: &[CertificateDer<'_>]) {
        let Ok(mut known) = self.0.lock() else {
            return;
        };
        for der in intermediates {
            if known.len() >= KNOWN_INTERMEDIATES {
                return;
            }
            if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) {
                known.insert(cert.subject().as_raw().to_vec());
            }
        }
    }

    fn contains(&self, subject: &[u8]) -> bool {
        self.0.lock().is_ok_and(|known| known.contains(subject))
    }
}

impl rustls::client::danger::ServerCertVerifier for ClassifyingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map_err(|source| classify(source, end_entity, intermediates, &self.known))?;
        self.known.learn(intermediates);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls12_signature(message, cert, dss)
            .map_err(|source| classify(source, cert, &[], &self.known))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls13_signature(message, cert, dss)
            .map_err(|source| classify(source, cert, &[], &self.known))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn classify(
    source: rustls::Error,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    known: &KnownIntermediates,
) -> rustls::Error {
    let mut code = match &source {
        rustls::Error::InvalidCertificate(c) => certificate_code(c),
        _ => "upstream_cert_invalid",
    };
    let parsed = x509_parser::parse_x509_certificate(leaf.as_ref()).ok();
    let self_signed = parsed
        .as_ref()
        .is_some_and(|(_, c)| c.issuer() == c.subject());
    let weak_rsa = parsed.as_ref().is_some_and(|(_, c)| {
        matches!(c.public_key().parsed(), Ok(x509_parser::public_key::PublicKey::RSA(k)) if k.key_size() < 2048)
    });
    if weak_rsa {
        // webpki only verifies RSA keys of 2048 bits and more; a smaller key surfaces as a
        // signature failure, but the cause an administrator can act on is the key size.
        code = "upstream_cert_weak_key";
    } else if self_signed && intermediates.is_empty() && code != "upstream_cert_expired" {
        // Whatever else webpki disliked first (a self-signed leaf often also says CA:TRUE),
        // "self-signed" is what the administrator needs to hear.
        code = "upstream_cert_self_signed";
    } else if code == "upstream_cert_unknown_issuer" {
        if let Some((_, cert)) = &parsed {
            if cert.issuer() == cert.subject() {
                code = "upstream_cert_self_signed";
            } else if intermediates.is_empty() && known.contains(cert.issuer().as_raw()) {
                // The leaf names an issuer the origin did not send, which is an intermediate
                // seen in other verified chains: the classic missing intermediate (security
                // matrix UC-04). An issuer nobody knows stays "unknown issuer" (issue 12
                // item 12): a missing intermediate is a guess the gateway cannot back.
                code = "upstream_cert_incomplete_chain";
            }
        }
    }
    let failure = CertFailure {
        code,
        leaf: cert_summary(leaf.as_ref()),
        source,
    };
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        failure,
    ))))
}

/// The classified failure inside an upstream handshake error, if it is one.
pub fn cert_failure(err: &rustls::Error) -> Option<&CertFailure> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other.0.downcast_ref(),
        _ => None,
    }
}

/// The stable reason code for an upstream TLS handshake error (log `reason`, metric label).
pub fn upstream_error_code(err: &rustls::Error) -> &'static str {
    use rustls::Error as E;
    if let Some(failure) = cert_failure(err) {
        return failure.code;
    }
    match err {
        E::InvalidCertificate(cert) => certificate_code(cert),
        E::NoCertificatesPresented => "upstream_cert_missing",
        E::AlertReceived(rustls::AlertDescription::ProtocolVersion) => "upstream_tls_version",
        E::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            "upstream_client_cert_required"
        }
        E::AlertReceived(rustls::AlertDescription::HandshakeFailure) => {
            "upstream_tls_handshake_failure"
        }
        E::AlertReceived(_) => "upstream_tls_alert",
        E::PeerIncompatible(_) => "upstream_tls_incompatible",
        E::PeerMisbehaved(_) | E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            "upstream_tls_protocol_error"
        }
        E::InappropriateHandshakeMessage { .. } => "upstream_tls_protocol_error",
        _ => "upstream_tls_error",
    }
}

// `UnsupportedSignatureAlgorithm` is deprecated but still produced by older webpki paths.
#[allow(deprecated)]
fn certificate_code(err: &CertificateError) -> &'static str {
    use CertificateError as C;
    match err {
        C::Expired | C::ExpiredContext { .. } => "upstream_cert_expired",
        C::NotValidYet | C::NotValidYetContext { .. } => "upstream_cert_not_yet_valid",
        C::NotValidForName | C::NotValidForNameContext { .. } => "upstream_cert_name_mismatch",
        C::UnknownIssuer => "upstream_cert_unknown_issuer",
        C::BadSignature => "upstream_cert_bad_signature",
        C::UnsupportedSignatureAlgorithm
        | C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "upstream_cert_weak_signature"
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "upstream_cert_invalid_purpose",
        C::Revoked => "upstream_cert_revoked",
        C::BadEncoding => "upstream_cert_bad_encoding",
        _ => "upstream_cert_invalid",
    }
}

/// A short, human-readable explanation of a reason code, for block pages.
pub fn describe(code: &str) -> &'static str {
    match code {
        "upstream_cert_expired" => "the server's certificate has expired",
        "upstream_cert_not_yet_valid" => "the server's certificate is not valid yet",
        "upstream_cert_name_mismatch" => "the server's certificate is for a different name",
        "upstream_cert_unknown_issuer" => {
            "the server's certificate is not issued by a trusted authority (self-signed or unknown issuer)"
        }
        "upstream_cert_self_signed" => "the server's certificate is self-signed",
        "upstream_cert_incomplete_chain" => {
            "the server did not send the intermediate certificate needed to verify it"
        }
        "upstream_cert_invalid" => "the server's certificate chain is invalid (for example a CA certificate used as a leaf, or a name constraint violated)",
        "upstream_cert_bad_signature" => "the server's certificate has an invalid signature",
        "upstream_cert_weak_key" => "the server's certificate has a key that is too small (RSA below 2048 bits)",
        "upstream_cert_weak_signature" => "the server's certificate uses a weak or unsupported signature",
        "upstream_cert_invalid_purpose" => "the server's certificate is not valid for TLS servers",
        "upstream_cert_revoked" => "the server's certificate has been revoked",
        "upstream_tls_version" => "the server only speaks an obsolete TLS version",
        "upstream_client_cert_required" => "the server requires a client certificate",
        _ => "the secure connection to the server failed",
    }
}

/// Issuer, subject and validity of a certificate, for the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    /// Issuer DN.
    pub issuer: String,
    /// Subject DN.
    pub subject: String,
    /// Not before, RFC 3339.
    pub not_before: String,
    /// Not after, RFC 3339.
    pub not_after: String,
    /// Not after, as a time (what a minted leaf must not outlive).
    pub expires: time::OffsetDateTime,
    /// The issuer's name as encoded (DER), to match CRL issuers exactly.
    pub issuer_der: Vec<u8>,
}

/// Summarises a DER certificate (None if it does not parse).
pub fn cert_summary(der: &[u8]) -> Option<CertSummary> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let fmt = |t: x509_parser::time::ASN1Time| {
        t.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    Some(CertSummary {
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
        not_before: fmt(cert.validity().not_before),
        not_after: fmt(cert.validity().not_after),
        expires: cert.validity().not_after.to_datetime(),
        issuer_der: cert.issuer().as_raw().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_offer_is_the_intersection() {
        let v = |s: &[&str]| s.iter().map(|p| p.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            AlpnOffer::from_client(&v(&["h2", "http/1.1"])),
            AlpnOffer::H2AndHttp11
        );
        assert_eq!(AlpnOffer::from_client(&v(&["http/1.1"])), AlpnOffer::Http11);
        assert_eq!(
            AlpnOffer::from_client(&v(&["spdy/3", "imap"])),
            AlpnOffer::None
        );
        assert_eq!(AlpnOffer::from_client(&[]), AlpnOffer::None);
    }

    #[test]
    fn certificate_errors_have_stable_codes() {
        let e = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(upstream_error_code(&e), "upstream_cert_expired");
        let e = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert_eq!(upstream_error_code(&e), "upstream_cert_name_mismatch");
        let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(upstream_error_code(&e), "upstream_cert_unknown_issuer");
    }
}
