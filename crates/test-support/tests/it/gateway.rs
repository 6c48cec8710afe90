//! TestGateway against a stand-in "gateway" shell script that speaks the same process
//! contract as `sluice run` (ready line on stderr, JSON lines on stdout, signals, CLI verbs).

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sluice_test_support::{GatewayConfig, TestGateway};

/// The stand-in. `FAKE_MODE=fail` exits 64 with a config error, `FAKE_MODE=silent` never
/// becomes ready. Each start bumps a counter in the data dir (to see that restarts keep it).
const FAKE: &str = r#"#!/bin/sh
verb=$1
while [ $# -gt 0 ]; do
  case "$1" in
    --config) cfg=$2; shift ;;
    --data-dir) data=$2; shift ;;
  esac
  shift
done
case "$verb" in
run)
  case "$FAKE_MODE" in
    fail) echo "error: unknown key proxy.bogus at line 3" >&2; exit 64 ;;
    silent) while :; do sleep 0.05; done ;;
  esac
  mkdir -p "$data/ca"; echo "not really a pem" > "$data/ca/sluice-ca.pem"
  n=$(cat "$data/starts" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$data/starts"
  trap 'echo "{\"kind\":\"reload\"}"' HUP
  trap 'echo "shutting down" >&2; exit 0' TERM
  echo "starting" >&2
  echo "sluice ready proxy=127.0.0.1:1111,127.0.0.1:1112 admin=127.0.0.1:2222 ca=$data/ca/sluice-ca.pem" >&2
  echo "{\"kind\":\"connect\",\"host\":\"zoom.us\",\"start\":$n}"
  echo "a line that is not JSON"
  while :; do sleep 0.05; done
  ;;
*)
  echo "verb=$verb cwd=$(pwd)"
  cat "$cfg"
  ;;
esac
"#;

/// Writes the stand-in once per process, atomically (write a temp file, rename over): a
/// process still running the previous copy keeps its inode, so concurrent test processes
/// (nextest) never see a half-written or busy file.
fn fake_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt as _;
        // Cargo's scratch dir for integration tests: kept between runs, cleaned with target/.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fake-sluice");
        std::fs::create_dir_all(&dir).expect("create stand-in dir");
        let tmp = dir.join(format!("sluice.{}", std::process::id()));
        std::fs::write(&tmp, FAKE).expect("write stand-in");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = dir.join("sluice");
        std::fs::rename(&tmp, &path).expect("install stand-in");
        path
    })
}

const T: Duration = Duration::from_secs(10);

#[test]
fn start_parses_ready_line_and_captures_logs() {
    let cfg = GatewayConfig::new()
        .hosts(&["zoom.us", "origin.test"])
        .extra_toml("[proxy]\nnon_tls = \"tunnel\"\n")
        .file("lists/finance/domains", "bank.test\n");
    let gw = TestGateway::start(fake_bin(), cfg);
    assert_eq!(gw.proxy_addr(), "127.0.0.1:1111".parse().expect("addr"));
    assert_eq!(gw.proxy_addrs().len(), 2);
    assert_eq!(gw.proxy_url(), "http://127.0.0.1:1111");
    assert_eq!(gw.admin_addr(), "127.0.0.1:2222".parse().expect("addr"));
    assert_eq!(gw.ca_pem_path(), gw.data_dir().join("ca/sluice-ca.pem"));
    assert!(gw.pid() > 0);

    let rec = gw.wait_for_log(|r| r["kind"] == "connect", T);
    assert_eq!(rec["host"], "zoom.us");
    assert!(gw.stdout_lines().len() >= 2 || gw.access_log().len() == 1);
    gw.wait_for_stderr("starting", T);

    let list = gw.dir().join("lists/finance/domains");
    assert_eq!(
        std::fs::read_to_string(list).expect("extra file"),
        "bank.test\n"
    );
    let hosts = std::fs::read_to_string(gw.hosts_path()).expect("hosts file");
    assert!(hosts.contains("127.0.0.1\tzoom.us"), "{hosts}");
    let config: toml::Table = gw.config_text().parse().expect("config is TOML");
    assert_eq!(config["proxy"]["non_tls"].as_str(), Some("tunnel"));
    assert_eq!(config["proxy"]["listen"][0].as_str(), Some("127.0.0.1:0"));
    assert_eq!(
        config["upstream"]["hosts_file"].as_str(),
        gw.hosts_path().to_str()
    );
}

#[test]
fn signals_restart_and_cli() {
    let mut gw = TestGateway::start(fake_bin(), GatewayConfig::new());
    gw.sighup();
    gw.wait_for_log(|r| r["kind"] == "reload", T);

    let out = gw.run_cli(&["check", "zoom.us", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let first = format!("verb=check cwd={}\n", gw.dir().display());
    assert!(stdout.starts_with(&first), "{stdout}");
    assert!(stdout.contains("allow_private = true"), "{stdout}");

    let status = gw.terminate();
    assert!(status.success(), "{status:?}");
    assert!(gw.stderr().iter().any(|l| l == "shutting down"));
    assert!(!gw.is_running());

    gw.restart();
    let rec = gw.wait_for_log(|r| r["kind"] == "connect", T);
    assert_eq!(rec["start"], 2, "same data dir across restarts");
    assert_eq!(gw.access_log().len(), 1, "capture starts afresh on restart");

    let status = gw.kill9();
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn failed_and_silent_starts_report_why() {
    let mut gw = TestGateway::prepare(fake_bin(), GatewayConfig::new().env("FAKE_MODE", "fail"));
    let err = gw.try_launch().expect_err("must fail");
    assert_eq!(err.status.and_then(|s| s.code()), Some(64));
    assert!(err.stderr.contains("unknown key proxy.bogus"), "{err:?}");

    let cfg = GatewayConfig::new()
        .env("FAKE_MODE", "silent")
        .ready_timeout(Duration::from_millis(300));
    let mut gw = TestGateway::prepare(fake_bin(), cfg);
    let err = gw.try_launch().expect_err("must time out");
    assert!(err.reason.contains("no ready line"), "{err:?}");
}

#[test]
fn start_in_keeps_the_dir_for_a_second_gateway() {
    let dir = tempfile::tempdir().expect("dir");
    let first = TestGateway::start_in(fake_bin(), GatewayConfig::new(), dir.path());
    first.wait_for_log(|r| r["start"] == 1, T);
    drop(first);
    let second = TestGateway::start_in(fake_bin(), GatewayConfig::new(), dir.path());
    second.wait_for_log(|r| r["start"] == 2, T);
}

#[test]
#[should_panic(expected = "0 of 1 expected access-log records")]
fn wait_for_log_panics_with_the_log() {
    // A dir owned here (dropped after the gateway) so that the panic leaves nothing behind.
    let dir = tempfile::tempdir().expect("dir");
    let gw = TestGateway::start_in(fake_bin(), GatewayConfig::new(), dir.path());
    gw.wait_for_log(|r| r["kind"] == "never", Duration::from_millis(200));
}
