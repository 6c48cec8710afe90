//! The real gateway binary as a test peer: writes its config and hosts file into a temp dir,
//! runs `sluice run --config FILE --data-dir DIR`, waits for the ready line on stderr
//! (`sluice ready proxy=ADDR[,ADDR] admin=ADDR ca=PATH`), captures the access log (stdout, one
//! JSON object per line) and stderr, and offers signals, restarts and the other CLI verbs.
//!
//! Layout of the work dir: `sluice.toml`, `hosts`, `data/` (the `--data-dir`), and the files
//! of [`GatewayConfig::file`]. The gateway and the CLI verbs run with the work dir as their
//! current directory: give them absolute paths for anything else.
//! Set `SLUICE_TEST_VERBOSE=1` to echo the gateway's stderr live into the test output.

mod capture;
mod config;
mod ready;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;
use tempfile::TempDir;

use capture::{lock, Capture};
pub use config::{GatewayConfig, READY_TIMEOUT};
pub use ready::{parse_ready, Ready};

/// How long [`TestGateway::terminate`] waits for the process to exit after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a CLI verb ([`TestGateway::run_cli`]) may run.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// A gateway process (or, before [`TestGateway::launch`], its prepared files); dropping it
/// kills the process and removes the temp dir (kept, and its path printed, if the test
/// panicked).
pub struct TestGateway {
    bin: PathBuf,
    cfg: GatewayConfig,
    dir: WorkDir,
    child: Option<Child>,
    ready: Option<Ready>,
    capture: Capture,
}

/// Why the gateway did not become ready.
#[derive(Debug)]
pub struct LaunchError {
    /// What went wrong (exited early, timed out, unparsable ready line).
    pub reason: String,
    /// The exit status, if it exited.
    pub status: Option<ExitStatus>,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

enum WorkDir {
    Temp(TempDir),
    Given(PathBuf),
}

// === impl TestGateway ===

impl TestGateway {
    /// Prepares a fresh temp dir and starts the gateway; panics with its stderr if it does not
    /// print the ready line within `cfg`'s timeout (30 s by default).
    pub fn start(bin: impl AsRef<Path>, cfg: GatewayConfig) -> Self {
        let mut gw = Self::prepare(bin, cfg);
        gw.launch();
        gw
    }

    /// Like [`Self::start`] in a directory the test owns (not deleted on drop): a second
    /// gateway over the same `dir` sees the same data dir (CA, learned state).
    pub fn start_in(bin: impl AsRef<Path>, cfg: GatewayConfig, dir: &Path) -> Self {
        let mut gw = Self::with_dir(bin, cfg, WorkDir::Given(dir.to_path_buf()));
        gw.launch();
        gw
    }

    /// Writes the files into a fresh temp dir without starting anything: for CLI verbs that
    /// need no running gateway, and for [`Self::try_launch`] tests expecting a failed start.
    pub fn prepare(bin: impl AsRef<Path>, cfg: GatewayConfig) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sluice-test-")
            .tempdir()
            .expect("create gateway temp dir");
        Self::with_dir(bin, cfg, WorkDir::Temp(dir))
    }

    fn with_dir(bin: impl AsRef<Path>, cfg: GatewayConfig, dir: WorkDir) -> Self {
        let gw = Self {
            bin: bin.as_ref().to_path_buf(),
            cfg,
            dir,
            child: None,
            ready: None,
            capture: Capture::default(),
        };
        std::fs::create_dir_all(gw.data_dir())
            .unwrap_or_else(|e| panic!("create {}: {e}", gw.data_dir().display()));
        gw.write_files();
        gw
    }

    /// Starts `sluice run` and waits for the ready line; panics with the stderr on failure.
    pub fn launch(&mut self) {
        if let Err(e) = self.try_launch() {
            panic!(
                "gateway did not become ready: {} (status {:?}); config:\n{}\n--- stderr ---\n{}",
                e.reason,
                e.status,
                self.config_text(),
                e.stderr
            );
        }
    }

    /// Starts `sluice run` and waits for the ready line, returning why it did not come.
    pub fn try_launch(&mut self) -> Result<(), LaunchError> {
        assert!(self.child.is_none(), "the gateway is already running");
        self.capture = Capture::default();
        let mut cmd = self.command();
        cmd.arg("run")
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = crate::process::spawn(&mut cmd)
            .unwrap_or_else(|e| panic!("spawn gateway {}: {e}", self.bin.display()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        self.capture.read_lines(stderr, true, Some(ready_tx));
        self.capture.read_lines(stdout, false, None);
        let result = self.await_ready(&mut child, &ready_rx);
        match result {
            Ok(ready) => {
                self.ready = Some(ready);
                self.child = Some(child);
                Ok(())
            }
            Err((reason, status)) => {
                if status.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                self.capture.join_readers();
                Err(LaunchError {
                    reason,
                    status,
                    stderr: self.stderr().join("\n"),
                })
            }
        }
    }

    fn await_ready(
        &self,
        child: &mut Child,
        ready_rx: &mpsc::Receiver<String>,
    ) -> Result<Ready, (String, Option<ExitStatus>)> {
        let deadline = Instant::now() + self.cfg.ready_timeout;
        loop {
            match ready_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => return parse_ready(&line).map_err(|e| (e, None)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // stderr closed without a ready line: the exit check below will see it.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(20));
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(("exited before printing the ready line".into(), Some(status)));
            }
            if Instant::now() >= deadline {
                let why = format!("no ready line within {:?}", self.cfg.ready_timeout);
                return Err((why, None));
            }
        }
    }

    /// Stops the gateway (SIGTERM) if running, rewrites the files and starts it again over the
    /// same data dir. Ports change (port 0): read the addresses again. The captured access log
    /// and stderr start afresh.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        self.write_files();
        self.launch();
    }

    /// Replaces the config (rewriting the config and hosts files) without signalling: follow
    /// with [`Self::sighup`] to test a reload or [`Self::restart`] to restart.
    pub fn reconfigure(&mut self, cfg: GatewayConfig) {
        self.cfg = cfg;
        self.write_files();
    }

    /// Sends SIGHUP (config reload).
    pub fn sighup(&self) {
        self.signal(Signal::HUP);
    }

    /// SIGTERM, then waits up to 10 s for the exit; panics (after SIGKILL) if it hangs.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::TERM);
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// SIGKILL (a crash), and waits for it.
    pub fn kill9(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the gateway is not running");
        child.kill().expect("SIGKILL the gateway");
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// Whether the process is still running (reaping it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("the gateway is not running");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the gateway") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "gateway did not exit within {timeout:?}\n--- stderr ---\n{}",
                    self.stderr().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        self.capture.join_readers();
        status
    }

    /// Runs another verb of the same binary with the same `--config` and `--data-dir`
    /// (appended after `args`), e.g. `run_cli(&["check", "zoom.us", "--json"])`.
    pub fn run_cli(&self, args: &[&str]) -> Output {
        self.run_cli_with_stdin(args, b"")
    }

    /// [`Self::run_cli`] feeding `stdin`.
    pub fn run_cli_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = self.command();
        cmd.args(args)
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir());
        crate::process::run_with_timeout(cmd, stdin, CLI_TIMEOUT)
            .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", self.bin.display()))
    }

    // --- addresses and files ---

    /// The first proxy listener.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.ready().proxy[0]
    }

    /// Every proxy listener.
    pub fn proxy_addrs(&self) -> Vec<SocketAddr> {
        self.ready().proxy.clone()
    }

    /// `http://127.0.0.1:PORT` of the first proxy listener (curl's `--proxy`).
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy_addr())
    }

    /// The admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.ready().admin
    }

    /// `http://127.0.0.1:PORT` of the admin listener.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr())
    }

    /// The gateway CA (PEM) from the ready line: what clients trust to accept minted leaves.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ready().ca
    }

    /// The whole parsed ready line.
    pub fn ready(&self) -> &Ready {
        self.ready
            .as_ref()
            .expect("the gateway has not printed its ready line (not launched?)")
    }

    /// The `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The work dir (config, hosts file, data dir).
    pub fn dir(&self) -> &Path {
        match &self.dir {
            WorkDir::Temp(t) => t.path(),
            WorkDir::Given(p) => p,
        }
    }

    /// The `--config` file.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("sluice.toml")
    }

    /// The hosts file (`upstream.hosts_file`).
    pub fn hosts_path(&self) -> PathBuf {
        self.dir().join("hosts")
    }

    /// The config file as written.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("the gateway is not running")
            .id()
    }

    // --- captured output ---

    /// Every access-log record so far (stdout lines that parse as JSON; others are skipped,
    /// see [`Self::stdout_lines`]).
    pub fn access_log(&self) -> Vec<Value> {
        lock(&self.capture.stdout)
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Raw stdout lines so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        lock(&self.capture.stdout).clone()
    }

    /// stderr lines so far.
    pub fn stderr(&self) -> Vec<String> {
        lock(&self.capture.stderr).clone()
    }

    /// Waits for the first access-log record matching `pred`; panics with the whole captured
    /// log and stderr after `timeout`.
    #[track_caller]
    pub fn wait_for_log(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        self.wait_for_logs(pred, 1, timeout).remove(0)
    }

    /// Waits until at least `count` access-log records match `pred` and returns all matches.
    #[track_caller]
    pub fn wait_for_logs(
        &self,
        pred: impl Fn(&Value) -> bool,
        count: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<Value> = self.access_log().into_iter().filter(|r| pred(r)).collect();
            if found.len() >= count {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} of {count} expected access-log records within {timeout:?}\n\
                     --- stdout ---\n{}\n--- stderr ---\n{}",
                    found.len(),
                    self.stdout_lines().join("\n"),
                    self.stderr().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    #[track_caller]
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.stderr().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no stderr line containing {needle:?} within {timeout:?}\n--- stderr ---\n{}",
                    self.stderr().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    // --- internals ---

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(self.dir());
        // Plain text on stderr (the ready line is parsed), and no data dir from the
        // environment: --data-dir is the only one.
        cmd.env("NO_COLOR", "1").env_remove("SLUICE_DATA_DIR");
        for (k, v) in &self.cfg.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn write_files(&self) {
        for (relative, contents) in &self.cfg.files {
            let path = self.dir().join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
            }
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        let hosts = self.hosts_path();
        std::fs::write(&hosts, self.cfg.hosts_file())
            .unwrap_or_else(|e| panic!("write {}: {e}", hosts.display()));
        let config = self.config_path();
        std::fs::write(&config, self.cfg.render(&hosts))
            .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
    }

    fn signal(&self, sig: Signal) {
        let child = self.child.as_ref().expect("the gateway is not running");
        kill_process(Pid::from_child(child), sig)
            .unwrap_or_else(|e| panic!("send {sig:?} to the gateway: {e}"));
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            // Keep the evidence of a failed test.
            if let WorkDir::Temp(t) = &mut self.dir {
                t.disable_cleanup(true);
            }
            eprintln!(
                "gateway work dir kept: {}\n--- gateway stderr (last 50 lines) ---",
                self.dir().display()
            );
            let stderr = self.stderr();
            for line in &stderr[stderr.len().saturating_sub(50)..] {
                eprintln!("{line}");
            }
        }
    }
}
