//! Shared helpers for the harness's own tests.

use std::path::Path;
use std::process::{Command, Output};

use sluice_test_support::pki::{Leaf, LeafOpts, TestPki};
use tempfile::TempDir;

/// A PKI in a temp dir that lives as long as the returned guard.
pub(crate) fn pki() -> (TempDir, TestPki) {
    let dir = tempfile::tempdir().expect("temp dir for the PKI");
    let pki = TestPki::new(dir.path());
    (dir, pki)
}

/// A default (valid, intermediate-issued) leaf for `names`.
pub(crate) fn leaf(pki: &TestPki, names: &[&str]) -> Leaf {
    pki.leaf(names, LeafOpts::default())
}

/// Runs `openssl` with `args`; panics if it cannot be run at all.
pub(crate) fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl not runnable ({e}): run the README test command, which installs it")
        })
}

/// A path as `&str` for argument lists.
pub(crate) fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
