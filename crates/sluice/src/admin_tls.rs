//! The admin listener on an address other than loopback (security matrix AD-01, HC-04): the
//! API and the UI are served over HTTPS only, so the admin token never crosses the network in
//! the clear. The certificate is signed by the gateway's own CA for `admin.tls_names` (default:
//! the listen address — or the loopback names for 0.0.0.0 / `::` — and the machine's host
//! name), minted once at start and served whatever SNI a client sends
//! ([`sluice_tls::fixed::FixedCert`]): nothing a client sends before authenticating makes the
//! gateway sign a name. Plain HTTP on the same port still answers the public
//! routes (`/ca.pem`, `/ca.der`, `/proxy.pac`, `/live`, `/ready`): a device fetches the CA and
//! the PAC file before it trusts anything.
//!
//! Written here rather than with a TLS acceptor crate because the two protocols share one
//! port: the first byte (a TLS handshake record is 0x16) picks the path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use sluice_policy::config::AdminConfig;
use sluice_policy::name::{DomainName, Host};
use sluice_tls::fixed::FixedCert;
use sluice_tls::mint::LeafName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a client has to send its first byte and finish the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Serves `listener` until `stop` changes, with `cert` for every TLS handshake.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    cert: Arc<FixedCert>,
    mut stop: watch::Receiver<bool>,
) {
    let plain = sluice_admin::public_only(router.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(cert)));
    // Marks requests that came over TLS: the cookie's `Secure`, the `https://` Origin.
    let router = router.layer(Extension(sluice_admin::auth::Https));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let (router, plain, acceptor) = (router.clone(), plain.clone(), acceptor.clone());
                tokio::spawn(serve_one(tcp, peer, router, plain, acceptor));
            }
        }
    }
}

async fn serve_one(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    plain: Router,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let mut first = [0u8; 1];
    let tls = match tokio::time::timeout(HANDSHAKE, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == 0x16,
        _ => return,
    };
    // The guard rate-limits failed token attempts per client address.
    let info = Extension(ConnectInfo(peer));
    if !tls {
        return serve_http(TokioIo::new(tcp), plain.layer(info)).await;
    }
    match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => serve_http(TokioIo::new(stream), router.layer(info)).await,
        Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "admin TLS handshake failed"),
        Err(_) => tracing::debug!(client = %peer, "admin TLS handshake timed out"),
    }
}

async fn serve_http<I>(io: TokioIo<I>, router: Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    if let Err(e) = Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await
    {
        tracing::debug!(error = %e, "admin connection ended with an error");
    }
}

fn server_config(cert: Arc<FixedCert>) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// The names of the admin certificate: `admin.tls_names`, else the defaults (module doc).
pub(crate) fn names(config: &AdminConfig, bound: IpAddr) -> Vec<LeafName> {
    if let Some(list) = &config.tls_names {
        return list
            .iter()
            .map(|h| match h {
                Host::Domain(d) => LeafName::Dns(d.as_str().to_owned()),
                Host::Ip(ip) => LeafName::Ip(*ip),
            })
            .collect();
    }
    let mut names = Vec::new();
    if bound.is_unspecified() {
        // Every local address answers; the loopback ones are the only ones known for sure.
        names.push(LeafName::Dns("localhost".into()));
        names.push(LeafName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        names.push(LeafName::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    } else {
        names.push(LeafName::Ip(bound));
    }
    for name in host_names() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The machine's host name, short and (when it has dots) in full, when it is a valid DNS name.
fn host_names() -> Vec<LeafName> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let Ok(full) = DomainName::parse(raw.trim()) else {
        return Vec::new();
    };
    let full = full.as_str().to_owned();
    let short = full.split('.').next().unwrap_or_default().to_owned();
    let mut out = vec![LeafName::Dns(short.clone())];
    if full != short {
        out.push(LeafName::Dns(full));
    }
    out
}
