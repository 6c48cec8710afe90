//! The admin listener on an address other than loopback (security matrix AD-01): the API and
//! the UI are served over HTTPS only, with a certificate minted by the gateway's own CA for the
//! name the client asks for (SNI, else the listener's address), so the admin token never
//! crosses the network in the clear. Plain HTTP on the same port still answers the public
//! routes (`/ca.pem`, `/ca.der`, `/proxy.pac`, `/live`, `/ready`): a device fetches the CA and
//! the PAC file before it trusts anything.
//!
//! Written here rather than with a TLS acceptor crate because the two protocols share one
//! port: the first byte (a TLS handshake record is 0x16) picks the path.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use sluice_proxy::Runtime;
use sluice_tls::mint::LeafName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a client has to send its first byte and finish the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Serves `listener` until `stop` changes.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    rt: Arc<Runtime>,
    mut stop: watch::Receiver<bool>,
) {
    let plain = sluice_admin::public_only(router.clone());
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let (router, plain, rt) = (router.clone(), plain.clone(), rt.clone());
                tokio::spawn(serve_one(tcp, peer, router, plain, rt));
            }
        }
    }
}

async fn serve_one(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    plain: Router,
    rt: Arc<Runtime>,
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
    let local = tcp.local_addr().map(|a| a.ip()).ok();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&rt, local)));
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

fn server_config(rt: &Arc<Runtime>, local: Option<IpAddr>) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AdminCert {
            rt: rt.clone(),
            local,
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// Mints (through the gateway's leaf cache) a certificate for the name the admin client asked
/// for, so the UI works under whatever name or address the administrator uses.
struct AdminCert {
    rt: Arc<Runtime>,
    local: Option<IpAddr>,
}

impl std::fmt::Debug for AdminCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCert")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl rustls::server::ResolvesServerCert for AdminCert {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let name = match hello.server_name() {
            Some(sni) => LeafName::Dns(sni.to_ascii_lowercase()),
            None => LeafName::Ip(self.local?),
        };
        self.rt.minter.leaf(&name).ok().map(|(key, _)| key)
    }
}
