//! Capturing the gateway's stdout (access log) and stderr line by line on reader threads.

use std::io::{BufRead as _, BufReader, Read};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::ready::READY_PREFIX;

/// Lines captured from the child's pipes by reader threads.
#[derive(Clone, Default)]
pub(super) struct Capture {
    pub(super) stdout: Arc<Mutex<Vec<String>>>,
    pub(super) stderr: Arc<Mutex<Vec<String>>>,
    readers: Arc<Mutex<Vec<thread::JoinHandle<()>>>>,
}

// === impl Capture ===

impl Capture {
    /// Reads `pipe` line by line into the stdout or stderr buffer on a thread; the first line
    /// holding the ready prefix also goes to `ready`.
    pub(super) fn read_lines(
        &self,
        pipe: impl Read + Send + 'static,
        is_stderr: bool,
        ready: Option<mpsc::Sender<String>>,
    ) {
        let lines = if is_stderr {
            self.stderr.clone()
        } else {
            self.stdout.clone()
        };
        let verbose = is_stderr && std::env::var_os("SLUICE_TEST_VERBOSE").is_some();
        let handle = thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut ready = ready;
            let mut buf = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                buf.clear();
                if verbose {
                    eprintln!("[sluice] {line}");
                }
                if line.contains(READY_PREFIX) {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                lock(&lines).push(line);
            }
        });
        lock(&self.readers).push(handle);
    }

    /// Waits (up to 2 s) for the reader threads to reach EOF so that every line the process
    /// wrote before exiting is captured.
    pub(super) fn join_readers(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let handles = std::mem::take(&mut *lock(&self.readers));
        for handle in handles {
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("gateway capture lock poisoned")
}
