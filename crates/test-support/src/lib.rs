//! Dev-only test harness for sluice: everything an end-to-end test needs to drive the real
//! gateway binary against real peers on loopback, and nothing the product ships.
//!
//! - [`pki`]: a throwaway PKI (root, intermediate, leaves with chosen defects) as PEM files.
//! - [`origin`]: HTTPS/HTTP origin servers (h1 + h2, WebSocket echo, misbehaving modes) that
//!   record what they saw.
//! - [`gateway`]: spawns `sluice run` on port 0, waits for its ready line, captures the access
//!   log, sends signals, runs other CLI verbs against the same config and data dir.
//! - [`dns`]: a stub DNS server answering per name (NXDOMAIN, SERVFAIL, silence, garbage,
//!   rebinding) and counting queries.
//! - [`clients`]: curl, `openssl s_client`, raw TCP, CONNECT tunnels and an in-process rustls
//!   client.
//!
//! Every listener binds 127.0.0.1 port 0; nothing here touches an address outside 127.0.0.0/8.
//! Origins run on their own threads and runtimes, and the curl/openssl/gateway helpers are
//! blocking, so tests may be plain `#[test]`s or `#[tokio::test]`s alike.
//! Helpers panic with a message that says what failed (this crate is only used by tests).

pub mod clients;
pub mod dns;
pub mod gateway;
pub mod origin;
pub mod pki;
mod process;
pub mod ws;

use std::sync::Arc;

pub use clients::{
    connect_tunnel, curl, curl_response, curl_response_via, curl_via, openssl_s_client,
    peer_cert_issuer_cn, raw_proxy_exchange, tls_over_tunnel, CurlOutput, CurlResponse,
};
pub use dns::StubDns;
pub use gateway::{GatewayConfig, TestGateway};
pub use origin::{Misbehave, SeenRequest, TestOrigin};
pub use pki::{IssuingCa, KeyType, Leaf, LeafIssuer, LeafOpts, TestPki, Validity};

/// The rustls crypto provider every config in this crate uses (aws-lc-rs), passed explicitly so
/// tests never depend on a process-wide default being installed.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
