//! End-to-end tests: the real `sluice` binary on loopback port 0, driven by real clients
//! (curl, openssl s_client, rustls) against real origins from `sluice-test-support`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod admin_tls;
mod browser;
mod ca_chain;
mod cli;
mod data_path;
mod dns;
mod evasion;
mod files;
mod h2proxy;
mod hostile;
mod hostile_client;
mod inspect;
mod lifecycle;
mod logs;
mod matrix;
mod pinning;
mod policy;
mod policy_api;

use std::path::Path;
use std::time::Duration;

use sluice_test_support::{GatewayConfig, Leaf, LeafOpts, TestGateway, TestOrigin, TestPki};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_sluice");
/// How long tests wait for an access-log record.
pub(crate) const LOG_WAIT: Duration = Duration::from_secs(10);

/// A test world: a PKI, one HTTPS origin answering for `names`, and a gateway that maps the
/// names to loopback, trusts the test root and may CONNECT to the origin's port.
pub(crate) struct World {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) pki: TestPki,
    pub(crate) leaf: Leaf,
    pub(crate) origin: TestOrigin,
    pub(crate) gw: TestGateway,
}

impl World {
    pub(crate) fn new(names: &[&str], extra_toml: &str) -> Self {
        Self::with(names, LeafOpts::default(), |cfg| cfg.extra_toml(extra_toml))
    }

    pub(crate) fn with(
        names: &[&str],
        opts: LeafOpts,
        tweak: impl FnOnce(GatewayConfig) -> GatewayConfig,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new(dir.path());
        let leaf = pki.leaf(names, opts);
        let origin = TestOrigin::builder()
            .tls(&leaf)
            .name(names[0])
            .start_blocking();
        let cfg = GatewayConfig::for_pki(&pki)
            .hosts(names)
            .connect_ports(&[origin.port()]);
        let gw = TestGateway::start(BIN, tweak(cfg));
        Self {
            _dir: dir,
            pki,
            leaf,
            origin,
            gw,
        }
    }

    pub(crate) fn url(&self, host: &str, path: &str) -> String {
        self.origin.url(host, path)
    }

    pub(crate) fn root(&self) -> &Path {
        self.pki.root_pem_path()
    }
}
