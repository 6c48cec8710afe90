//! Opening one TLS connection to the target: TCP to the proxy and `CONNECT host:port` (or TCP
//! straight to the origin with `--direct`), then a rustls handshake that trusts only the CA
//! file given, with SNI = the URL's host.
//!
//! Trusting only one CA is the certificate check of a benchmark row: a decrypt row trusts the
//! gateway's CA and a bypass row the origin's, so a gateway that decrypts what it should bypass
//! (or the reverse) fails every handshake instead of posting a number.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, ensure, Context as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The largest CONNECT response head accepted.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// Where TCP connections go.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Route {
    /// To this explicit proxy, then `CONNECT host:port`.
    Proxy(SocketAddr),
    /// Straight to the origin at this address.
    Direct(SocketAddr),
}

/// Everything needed to open a connection; cheap to clone (shared by all workers).
#[derive(Clone)]
pub(crate) struct Dialer {
    /// Where TCP goes: the proxy, or the origin itself with `--direct`.
    tcp_addr: SocketAddr,
    /// `Some(host:port)` to send `CONNECT` for; `None` when direct.
    connect_target: Option<Arc<str>>,
    server_name: ServerName<'static>,
    tls: TlsConnector,
}

// === impl Dialer ===

impl Dialer {
    /// A dialer for `host:port` (the TLS name and the CONNECT target) along `route`.
    pub(crate) fn new(
        route: Route,
        host: &str,
        port: u16,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let server_name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("{host:?} is not a valid TLS server name"))?;
        let (tcp_addr, connect_target) = match route {
            Route::Proxy(p) => (
                p,
                Some(Arc::from(format!("{}:{port}", authority_host(host)))),
            ),
            Route::Direct(a) => (a, None),
        };
        Ok(Self {
            tcp_addr,
            connect_target,
            server_name,
            tls: TlsConnector::from(tls),
        })
    }

    /// `proxy` or `direct`, for the report.
    pub(crate) fn via(&self) -> &'static str {
        if self.connect_target.is_some() {
            "proxy"
        } else {
            "direct"
        }
    }

    /// TCP (+ CONNECT) + TLS handshake.
    pub(crate) async fn connect(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let mut tcp = TcpStream::connect(self.tcp_addr)
            .await
            .with_context(|| format!("connect {}", self.tcp_addr))?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        if let Some(target) = &self.connect_target {
            connect_tunnel(&mut tcp, target).await?;
        }
        self.tls
            .connect(self.server_name.clone(), tcp)
            .await
            .context("TLS handshake")
    }
}

/// Sends `CONNECT target` and reads the proxy's answer, which must be a 2xx with nothing after
/// the head (the origin speaks only after our ClientHello, so extra bytes mean a broken proxy).
async fn connect_tunnel(tcp: &mut TcpStream, target: &str) -> anyhow::Result<()> {
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .context("send CONNECT")?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        let n = tcp.read(&mut buf).await.context("read CONNECT response")?;
        ensure!(n > 0, "proxy closed the connection after CONNECT");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_head_end(&head) {
            ensure!(
                end == head.len(),
                "proxy sent {} bytes after the CONNECT response head",
                head.len() - end
            );
            break;
        }
        ensure!(
            head.len() <= MAX_CONNECT_HEAD,
            "CONNECT response head too large"
        );
    }
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if !code.starts_with('2') || code.len() != 3 {
        bail!("CONNECT {target} refused: {}", status_line.trim_end());
    }
    Ok(())
}

/// The index just past `\r\n\r\n`, if the head is complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// `[::1]` for IPv6 literals in an authority, the name itself otherwise.
fn authority_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A rustls client config trusting only the certificates of `ca_file` (PEM), offering `alpn`.
///
/// Session resumption is rustls' default (an in-memory cache shared by every connection of the
/// run), as a browser would do; `no_resume` makes every handshake a full one.
pub(crate) fn tls_config(
    ca_file: &Path,
    alpn: &[&[u8]],
    no_resume: bool,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("read CA file {}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("parse CA file {}", ca_file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("CA certificate in {}", ca_file.display()))?;
    }
    ensure!(!roots.is_empty(), "no certificate in {}", ca_file.display());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if no_resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\n"), Some(19));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n"), None);
    }

    #[test]
    fn ipv6_authority() {
        assert_eq!(authority_host("::1"), "[::1]");
        assert_eq!(authority_host("bench.test"), "bench.test");
    }
}
