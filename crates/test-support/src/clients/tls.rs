//! An in-process rustls client for use over a CONNECT tunnel (or any stream): exact control of
//! SNI, ALPN and trust anchors, certificate inspection, and one HTTP request (h1 or h2, as
//! ALPN decided) over the result.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// How the client checks the server certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    /// Chain to one of the roots and match the server name (what a browser does).
    #[default]
    Full,
    /// Chain to one of the roots, any name (for inspecting what a proxy minted).
    IgnoreName,
    /// Accept any certificate (handshake signatures are still checked).
    Nothing,
}

/// Options for [`tls_over_tunnel_with`].
#[derive(Clone, Debug, Default)]
pub struct TlsClientOptions {
    /// Name sent as SNI and verified; an IP literal is verified against IP SANs and, as in
    /// every TLS client, not sent as SNI.
    pub server_name: String,
    /// Send SNI (default true through [`TlsClientOptions::new`]).
    pub send_sni: bool,
    /// PEM files of trusted roots.
    pub roots: Vec<PathBuf>,
    /// ALPN protocols offered, e.g. `["h2", "http/1.1"]`.
    pub alpn: Vec<String>,
    /// Certificate checking.
    pub verify: Verify,
}

/// One response, fully read.
#[derive(Clone, Debug)]
pub struct SimpleResponse {
    /// Status code.
    pub status: u16,
    /// `HTTP/1.1` or `HTTP/2`.
    pub version: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Verifier used for [`Verify::IgnoreName`] and [`Verify::Nothing`].
#[derive(Debug)]
struct LaxVerifier {
    /// Chain checks (absent for `Verify::Nothing` without roots).
    inner: Option<Arc<WebPkiServerVerifier>>,
    verify: Verify,
    /// Handshake signatures are checked whatever `verify` says.
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

// === TLS client ===

/// TLS handshake over `stream` (typically [`super::connect_tunnel`]'s) trusting the roots in
/// `roots_pem`, offering `alpn`. With `sni: Some(name)` the name is sent and verified; with
/// `None` no SNI is sent and the certificate's name is not checked (its chain still is), so a
/// test can see what the gateway presents to a client without SNI.
pub async fn tls_over_tunnel<S>(
    stream: S,
    sni: Option<&str>,
    roots_pem: &Path,
    alpn: &[&str],
) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut opts = TlsClientOptions::new(sni.unwrap_or("no-sni.invalid"))
        .root(roots_pem)
        .alpn(alpn);
    if sni.is_none() {
        opts.send_sni = false;
        opts.verify = Verify::IgnoreName;
    }
    tls_over_tunnel_with(stream, &opts).await
}

/// TLS handshake over `stream` with full control (see [`TlsClientOptions`]).
pub async fn tls_over_tunnel_with<S>(stream: S, opts: &TlsClientOptions) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let provider = crate::crypto_provider();
    let mut roots = RootCertStore::empty();
    for path in &opts.roots {
        super::require_file(path, "trust anchor file");
        for cert in CertificateDer::pem_file_iter(path).map_err(io::Error::other)? {
            roots
                .add(cert.map_err(io::Error::other)?)
                .map_err(io::Error::other)?;
        }
    }
    // webpki refuses an empty root store; Verify::Nothing needs none.
    let webpki = match (opts.verify, roots.is_empty()) {
        (Verify::Nothing, true) => None,
        _ => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(io::Error::other)?,
        ),
    };
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let mut config = match (opts.verify, webpki) {
        (Verify::Full, Some(webpki)) => builder.with_webpki_verifier(webpki),
        (verify, inner) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LaxVerifier {
                inner,
                verify,
                algorithms,
            })),
    }
    .with_no_client_auth();
    config.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config.enable_sni = opts.send_sni;
    let name = ServerName::try_from(opts.server_name.clone()).map_err(io::Error::other)?;
    TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
}

/// Common name of the issuer of the server's leaf certificate.
pub fn peer_cert_issuer_cn<S>(tls: &TlsStream<S>) -> String {
    cert_issuer_cn(peer_leaf(tls))
}

/// Common name of the subject of the server's leaf certificate.
pub fn peer_cert_subject_cn<S>(tls: &TlsStream<S>) -> String {
    cert_subject_cn(peer_leaf(tls))
}

/// Common name of a DER certificate's issuer (empty if it has none).
pub fn cert_issuer_cn(der: &[u8]) -> String {
    let cert = parse(der);
    first_cn(cert.issuer())
}

/// Common name of a DER certificate's subject (empty if it has none).
pub fn cert_subject_cn(der: &[u8]) -> String {
    let cert = parse(der);
    first_cn(cert.subject())
}

fn peer_leaf<S>(tls: &TlsStream<S>) -> &[u8] {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .expect("the server presented no certificate")
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der)
        .unwrap_or_else(|e| panic!("certificate does not parse: {e}"))
        .1
}

fn first_cn(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

// === one HTTP request ===

/// `GET path` over an established TLS stream, HTTP/2 if ALPN chose `h2` else HTTP/1.1, with
/// `authority` as Host / `:authority`. Consumes the stream (one request per connection).
pub async fn http_get<S>(
    tls: TlsStream<S>,
    authority: &str,
    path: &str,
) -> io::Result<SimpleResponse>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = hyper_util::rt::TokioIo::new(tls);
    let res = if h2 {
        let uri = format!("https://{authority}{path}");
        let req = http::Request::get(uri)
            .body(Empty::<Bytes>::new())
            .map_err(io::Error::other)?;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .map_err(io::Error::other)?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(io::Error::other)?
    } else {
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(io::Error::other)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(io::Error::other)?
    };
    let status = res.status().as_u16();
    let version = if res.version() == http::Version::HTTP_2 {
        "HTTP/2"
    } else {
        "HTTP/1.1"
    };
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_owned(), value)
        })
        .collect();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes()
        .to_vec();
    Ok(SimpleResponse {
        status,
        version: version.to_owned(),
        headers,
        body,
    })
}

// === impl TlsClientOptions ===

impl TlsClientOptions {
    /// Verify and send SNI for `server_name`, no roots yet, no ALPN.
    pub fn new(server_name: &str) -> Self {
        Self {
            server_name: server_name.to_owned(),
            send_sni: true,
            ..Self::default()
        }
    }

    /// Trust the certificates in this PEM file.
    pub fn root(mut self, pem: &Path) -> Self {
        self.roots.push(pem.to_path_buf());
        self
    }

    /// Offer these ALPN protocols.
    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// Check the certificate this way.
    pub fn verify(mut self, verify: Verify) -> Self {
        self.verify = verify;
        self
    }

    /// Do not send SNI.
    pub fn no_sni(mut self) -> Self {
        self.send_sni = false;
        self
    }
}

// === impl SimpleResponse ===

impl SimpleResponse {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

// === impl LaxVerifier ===

impl ServerCertVerifier for LaxVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = self
            .inner
            .as_ref()
            .filter(|_| self.verify != Verify::Nothing)
        else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
