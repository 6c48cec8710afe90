//! The files sluice writes are private (issue 12 item 9, security matrix HC-09): the access log
//! holds decrypted URLs with their query strings, the event store holds who visited what, the
//! audit trail who did what. The data dir is 0700; the database, its WAL and SHM files, the
//! access log and the audit trail are created 0600 (`log.mode = "0640"` gives a group read
//! access to the logs), whatever the process umask says: the gateway runs here under
//! `umask 000`, where a mode left to the defaults would come out world-writable.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_test_support::{curl_response, GatewayConfig, TestGateway};

use crate::admin::eventually;
use crate::BIN;

/// A wrapper that runs the real binary under `umask 000` (and `umask 077` for `log.mode`).
fn under_umask(dir: &Path, umask: &str) -> PathBuf {
    let path = dir.join(format!("sluice-umask-{umask}"));
    std::fs::write(
        &path,
        format!("#!/bin/sh\numask {umask}\nexec '{BIN}' \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// One failed bearer attempt: the audit trail records it (without waiting for the disk).
fn audited_failure(gw: &TestGateway, audit: &Path) {
    let url = format!("{}/api/config", gw.admin_url());
    let r = curl_response(&["-H", "Authorization: Bearer wrong-token-000", &url]);
    assert_eq!(r.http_code, 401);
    assert!(
        eventually(Duration::from_secs(5), || audit.exists()),
        "the failed attempt must be audited in {}",
        audit.display()
    );
}

#[test]
fn data_dir_store_and_logs_are_private_whatever_the_umask_hc09() {
    let tools = tempfile::tempdir().unwrap();
    let bin = under_umask(tools.path(), "000");
    let cfg = GatewayConfig::new().set("log.access", "access.log");
    let mut gw = TestGateway::prepare(&bin, cfg);
    let data = gw.data_dir();
    // The harness made the data dir 0755, as an older sluice or an installer would have.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    gw.launch();
    assert_eq!(mode(&data), 0o700, "an existing 0755 data dir is tightened");
    assert!(
        gw.stderr().iter().any(|l| l.contains("data dir")),
        "tightening the data dir is logged: {:?}",
        gw.stderr()
    );
    for file in ["sluice.db", "sluice.db-wal", "sluice.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let access = gw.dir().join("access.log");
    assert_eq!(mode(&access), 0o600, "access log");
    let audit = data.join("admin-audit.jsonl");
    audited_failure(&gw, &audit);
    assert_eq!(mode(&audit), 0o600, "audit trail");
    // The CA directory and key stay as they were (0700, 0600).
    assert_eq!(mode(&data.join("ca")), 0o700);
    assert_eq!(mode(&data.join("ca/sluice-ca.key")), 0o600);

    // A store left world-readable by an older version is tightened at the next start.
    gw.terminate();
    std::fs::set_permissions(
        data.join("sluice.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&access, std::fs::Permissions::from_mode(0o644)).unwrap();
    gw.launch();
    assert_eq!(mode(&data.join("sluice.db")), 0o600);
    assert_eq!(
        mode(&access),
        0o600,
        "log.mode applies to an existing log too"
    );
}

#[test]
fn a_fresh_data_dir_is_created_0700_by_the_cli_too() {
    let tools = tempfile::tempdir().unwrap();
    let bin = under_umask(tools.path(), "000");
    let fresh = tools.path().join("new/data");
    let out = std::process::Command::new(&bin)
        .args(["pinning", "list", "--data-dir"])
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("sluice.db")), 0o600);
    let out = std::process::Command::new(&bin)
        .args(["ca", "export", "--data-dir"])
        .arg(tools.path().join("other"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(mode(&tools.path().join("other")), 0o700);
}

#[test]
fn log_mode_gives_a_group_read_access_and_refuses_world_bits() {
    let tools = tempfile::tempdir().unwrap();
    // umask 077 would strip the group bit from a mode passed to open(2): it must not matter.
    let bin = under_umask(tools.path(), "077");
    let cfg = GatewayConfig::new()
        .set("log.access", "access.log")
        .set("log.mode", "0640");
    let gw = TestGateway::start(&bin, cfg);
    assert_eq!(mode(&gw.dir().join("access.log")), 0o640);
    let audit = gw.data_dir().join("admin-audit.jsonl");
    audited_failure(&gw, &audit);
    assert_eq!(mode(&audit), 0o640);
    // The store is not a log: it stays 0600.
    assert_eq!(mode(&gw.data_dir().join("sluice.db")), 0o600);

    for bad in [
        "0644",
        "0666",
        "0660",
        "0700",
        "0400",
        "rw-r-----",
        "",
        "01640",
        "9",
    ] {
        let cfg = GatewayConfig::new().set("log.mode", bad);
        let gw = TestGateway::prepare(BIN, cfg);
        let out = gw.run_cli(&["config", "check", gw.config_path().to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "log.mode = {bad:?} must be refused");
        assert!(
            stderr.contains("log.mode") || stdout.contains("log.mode"),
            "{bad:?}: {stderr}{stdout}"
        );
    }
}
