//! `sluice-load origin`: the HTTPS origin of the benchmark, so it needs nothing outside this
//! repository. Serves `GET /1k` (1024 bytes) and `GET /1m` (1 MiB) over HTTP/1.1 and h2 (ALPN)
//! with hyper, and prints `origin ready addr=ADDR ca=PATH` on stdout once listening.
//!
//! Its certificate is either given (`--cert` chain + `--key`) or generated at start: a test root
//! (ECDSA P-256, written to `--ca-out`) signing a leaf for `--name`s, RSA-2048 by default like
//! most web servers (the key type sets the origin's handshake cost). Not a general web server:
//! no files, no methods other than what a benchmark sends, no logging per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Options of `sluice-load origin`.
#[derive(Args, Debug)]
pub(crate) struct OriginArgs {
    /// Address to listen on (port 0 picks a free port; the ready line names it).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Certificate chain to serve (PEM, leaf first) instead of generating one.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key of `--cert` (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Where to write the generated test root (PEM), for clients' `--cacert` and the gateway's
    /// `upstream.extra_roots`.
    #[arg(long, conflicts_with = "cert", required_unless_present = "cert")]
    ca_out: Option<PathBuf>,
    /// Names (DNS or IP) of the generated leaf.
    #[arg(
        long = "name",
        default_values_t = ["bench.test".to_owned(), "bypass.test".to_owned(),
                            "localhost".to_owned(), "127.0.0.1".to_owned()]
    )]
    names: Vec<String>,
    /// Key type of the generated leaf.
    #[arg(long, value_enum, default_value_t = LeafKey::Rsa2048)]
    leaf_key: LeafKey,
}

/// Key type of the generated leaf.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LeafKey {
    /// RSA 2048, PKCS#1 v1.5 with SHA-256 (what most origins serve).
    Rsa2048,
    /// ECDSA P-256 with SHA-256.
    EcdsaP256,
}

/// The two bodies, built once and shared by reference count.
struct Bodies {
    one_k: Bytes,
    one_m: Bytes,
}

/// Runs the origin until the process is killed.
pub(crate) async fn run(args: OriginArgs) -> anyhow::Result<()> {
    let (chain, key) = match (&args.cert, &args.key, &args.ca_out) {
        (Some(cert), Some(key), _) => load_pem(cert, key)?,
        (_, _, Some(ca_out)) => generate(ca_out, &args.names, args.leaf_key)?,
        // clap enforces `--cert` + `--key` or `--ca-out`.
        _ => anyhow::bail!("give --cert and --key, or --ca-out"),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("certificate and key do not match")?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let addr = listener.local_addr().context("local address")?;
    let ca = args
        .ca_out
        .as_deref()
        .map_or_else(|| "-".to_owned(), |p| p.display().to_string());
    println!("origin ready addr={addr} ca={ca}");
    let bodies = Arc::new(Bodies {
        one_k: Bytes::from(vec![b'k'; 1024]),
        one_m: Bytes::from(vec![b'm'; 1024 * 1024]),
    });
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            // Out of file descriptors and the like: keep serving the connections we have.
            Err(e) => {
                eprintln!("origin: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve(tcp, acceptor.clone(), bodies.clone()));
    }
}

/// One connection: TLS, then HTTP/1.1 or h2 as ALPN chose. Errors end only this connection.
async fn serve(tcp: tokio::net::TcpStream, acceptor: TlsAcceptor, bodies: Arc<Bodies>) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let service = service_fn(move |req: Request<Incoming>| {
        let bodies = bodies.clone();
        async move { Ok::<_, Infallible>(respond(&req, &bodies)) }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

fn respond(req: &Request<Incoming>, bodies: &Bodies) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/1k" => (StatusCode::OK, bodies.one_k.clone()),
        "/1m" => (StatusCode::OK, bodies.one_m.clone()),
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

type Chain = Vec<CertificateDer<'static>>;

fn load_pem(cert: &Path, key: &Path) -> anyhow::Result<(Chain, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("read {}", key.display()))?;
    Ok((chain, key))
}

/// A fresh root (written to `ca_out`) and a leaf for `names` signed by it.
fn generate(
    ca_out: &Path,
    names: &[String],
    leaf_key: LeafKey,
) -> anyhow::Result<(Chain, PrivateKeyDer<'static>)> {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("CA key")?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name =
        common_name(&format!("sluice-load origin root {}", std::process::id()));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).context("self-sign CA")?;
    std::fs::write(ca_out, ca_cert.pem()).with_context(|| format!("write {}", ca_out.display()))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let alg = match leaf_key {
        LeafKey::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        LeafKey::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let key = KeyPair::generate_for(alg).context("leaf key")?;
    // CertificateParams::new makes IP literals iPAddress SANs and the rest dNSName SANs.
    let mut params = CertificateParams::new(names.to_vec()).context("leaf names")?;
    params.distinguished_name = common_name(names.first().map_or("origin", String::as_str));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let leaf = params.signed_by(&key, &issuer).context("sign leaf")?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((vec![leaf.der().clone()], key_der))
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}
