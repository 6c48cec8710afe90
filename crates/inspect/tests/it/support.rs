//! A real ICAP antivirus service for tests: runs `scripts/icap-lab` (c-icap's virus_scan in
//! front of clamd, with a one-signature database for the EICAR test string) on a free loopback
//! port, waits for its ready line (printed once the service answers OPTIONS) and stops it on
//! drop. Written to be movable to `sluice-test-support` for the end-to-end tests.
//!
//! It never skips: if c-icap or ClamAV is missing or does not start, the test fails with the
//! lab's own diagnostics.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the lab may take to start (clamd loading its database, c-icap forking workers),
/// generous for a loaded two-core CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running lab; dropped, it stops both daemons and removes its directory.
pub(crate) struct IcapLab {
    script: Child,
    /// `icap://127.0.0.1:PORT/avscan`.
    pub(crate) url: String,
    /// The lab's directory: `eicar.com`, configs, logs.
    pub(crate) dir: PathBuf,
    clamd_pid: u32,
    icap_pid: u32,
}

impl IcapLab {
    /// Starts the lab; panics with the reason if it cannot.
    pub(crate) fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/icap-lab");
        let mut last_error = String::new();
        // A free port can be taken by someone else before c-icap binds it: try another.
        for _ in 0..3 {
            match Self::try_start(&script, free_port()) {
                Ok(lab) => return lab,
                Err(e) => last_error = e,
            }
        }
        panic!(
            "the c-icap + ClamAV lab did not start: {last_error}\n\
             (needs: apt-get install -y c-icap libc-icap-mod-virus-scan clamav-daemon clamav, \
             which scripts/test does)"
        );
    }

    fn try_start(script: &Path, port: u16) -> Result<Self, String> {
        let mut child = Command::new("bash")
            .arg(script)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("icap-lab ready ") => {
                    return Self::from_ready_line(child, &line);
                }
                Ok(_) => {}
                Err(e) => {
                    stop(&mut child);
                    let stderr = errors.join().unwrap_or_default();
                    return Err(format!("{e:?}; script stderr:\n{stderr}"));
                }
            }
        }
    }

    fn from_ready_line(script: Child, line: &str) -> Result<Self, String> {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
                .ok_or_else(|| format!("no {name} in {line:?}"))
        };
        let pid = |name: &str| {
            field(name)?
                .parse::<u32>()
                .map_err(|e| format!("{name}: {e}"))
        };
        Ok(Self {
            url: field("url")?,
            dir: PathBuf::from(field("dir")?),
            clamd_pid: pid("clamd_pid")?,
            icap_pid: pid("icap_pid")?,
            script,
        })
    }

    /// The EICAR test file's bytes.
    pub(crate) fn eicar(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("eicar.com")).expect("lab eicar.com")
    }

    /// Stops clamd only: c-icap keeps answering, with errors.
    pub(crate) fn stop_clamd(&mut self) {
        terminate(self.clamd_pid);
    }

    /// Stops c-icap as a crash would (SIGKILL to it and its worker processes): its port
    /// refuses connections at once, and open connections break. (A graceful SIGTERM waits
    /// for idle keep-alive connections for about 10 s.)
    pub(crate) fn stop_icap(&mut self) {
        let workers = children_of(self.icap_pid);
        for pid in std::iter::once(self.icap_pid).chain(workers) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        wait_gone(self.icap_pid);
    }
}

impl Drop for IcapLab {
    fn drop(&mut self) {
        stop(&mut self.script);
    }
}

/// SIGTERM to a process this lab started (its script cleans up after itself), SIGKILL if it
/// is still there after 10 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGTERM to one of the lab's daemons, by the id its script reported; waits until it is gone.
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    wait_gone(pid);
}

/// Waits until the script has reaped `pid`.
fn wait_gone(pid: u32) {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!proc.exists(), "process {pid} did not stop within 10 s");
}

/// The processes whose parent is `pid` (from `/proc/*/stat`: the parent id is the second field
/// after the parenthesised command name).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
