//! Running a child process to completion with a deadline, feeding stdin and collecting both
//! pipes, so that a hung client (curl, openssl, a CLI verb) fails the test instead of hanging it.

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `cmd` with `stdin` as its input; after `timeout` the child is killed and whatever it
/// printed so far is returned (its status then reports the kill signal).
pub(crate) fn run_with_timeout(
    mut cmd: Command,
    stdin: &[u8],
    timeout: Duration,
) -> std::io::Result<Output> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd)?;
    let mut child_stdin = child.stdin.take().expect("stdin was piped");
    let input = stdin.to_vec();
    // A writer thread: a child that does not read its input must not block us.
    let writer = thread::spawn(move || {
        let _ = child_stdin.write_all(&input);
        // Dropping closes stdin: the child sees EOF.
    });
    let out_reader = drain(child.stdout.take().expect("stdout was piped"));
    let err_reader = drain(child.stderr.take().expect("stderr was piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    Ok(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// `cmd.spawn()`, retried briefly on ETXTBSY: an executable a test has just written can be
/// "busy" while another thread's fork still holds the write descriptor (until that child
/// execs), a known race of writing-then-running in multi-threaded test binaries.
pub(crate) fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}
