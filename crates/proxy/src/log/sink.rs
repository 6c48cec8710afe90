//! Where the access-log writer puts its bytes: standard output, or an append-only file in
//! which every byte belongs to a complete line (security matrix DL-02, DL-03).
//!
//! For a file this module
//! - repairs the tail at open: an unterminated last line, or trailing lines that are not JSON,
//!   are what a crash in the middle of a write leaves behind; they are cut off so the next
//!   record starts on a line of its own, and the last complete record's `seq` is returned so
//!   numbering continues without reuse;
//! - writes each batch with one `write_all` and, when that fails part-way (ENOSPC, EFBIG,
//!   EIO), truncates the file back to the end of the last complete line, so a reader never
//!   sees half a record. The caller drops the batch and tries again with the next one.
//!
//! It does not fsync: a batch is in the kernel once `write(2)` returned, which survives a
//! SIGKILL of the gateway but not a power cut.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How much of an existing file is read back to find its last complete record. A record is a
/// few hundred bytes; even one carrying a 64 KiB URL escaped six-fold fits.
const TAIL_WINDOW: u64 = 1 << 20;

/// The destination of the access log.
pub(super) enum Sink {
    /// Standard output (`log.access = "-"`): no repair, no truncation possible.
    Stdout(std::io::Stdout),
    /// An append-only file.
    File(FileSink),
}

/// An append-only log file and the offset where its last complete line ends.
pub(super) struct FileSink {
    path: PathBuf,
    /// Permission bits of the file (`log.mode`).
    mode: u32,
    file: File,
    /// End of the last complete line: where the file is cut back to after a failed write.
    good: u64,
    /// A failed write could not be cut back yet (the truncate failed too): retry it before
    /// appending anything else.
    damaged: bool,
}

/// What the tail scan of an existing file found.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Tail {
    /// Bytes of the window to keep (the rest is a torn tail).
    pub(super) keep: usize,
    /// `seq` of the last complete record, if it has one.
    pub(super) last_seq: Option<u64>,
}

// === impl Sink ===

impl Sink {
    /// Opens stdout (`None`) or the file, repairing its tail. Returns the sink and the first
    /// sequence number to use.
    pub(super) fn open(path: Option<&Path>, mode: u32) -> std::io::Result<(Self, u64)> {
        match path {
            None => Ok((Self::Stdout(std::io::stdout()), 1)),
            Some(p) => {
                let (sink, last_seq) = FileSink::open(p, mode)?;
                Ok((
                    Self::File(sink),
                    last_seq.map_or(1, |s| s.saturating_add(1)),
                ))
            }
        }
    }

    /// Writes one batch of complete lines, all or nothing (for a file).
    pub(super) fn write_batch(&mut self, batch: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(batch)?;
                out.flush()
            }
            Self::File(f) => f.write_batch(batch),
        }
    }

    /// Opens the path again (logrotate moved the file away): the old file keeps what it has.
    pub(super) fn reopen(&mut self) -> std::io::Result<()> {
        if let Self::File(f) = self {
            f.repair();
            let (fresh, _) = FileSink::open(&f.path, f.mode)?;
            *f = fresh;
        }
        Ok(())
    }
}

// === impl FileSink ===

impl FileSink {
    fn open(path: &Path, mode: u32) -> std::io::Result<(Self, Option<u64>)> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(mode)
            .open(path)?;
        // open(2) applies the umask to a new file's mode and leaves an existing one alone.
        super::restrict_mode(&file, path, mode);
        let len = file.metadata()?.len();
        let start = len.saturating_sub(TAIL_WINDOW);
        let mut window = Vec::new();
        file.seek(SeekFrom::Start(start))?;
        (&mut file).take(len - start).read_to_end(&mut window)?;
        let tail = scan_tail(&window, start == 0);
        let good = start + tail.keep as u64;
        if good < len {
            // Said once, at start: the operator should know the previous run ended mid-write.
            tracing::warn!(
                path = %path.display(),
                removed_bytes = len - good,
                "access log ended in a torn line; truncated to the last complete record"
            );
            file.set_len(good)?;
        }
        let sink = Self {
            path: path.to_path_buf(),
            mode,
            file,
            good,
            damaged: false,
        };
        Ok((sink, tail.last_seq))
    }

    fn write_batch(&mut self, batch: &[u8]) -> std::io::Result<()> {
        if self.damaged {
            self.file.set_len(self.good)?;
            self.damaged = false;
        } else {
            // Re-read the length rather than trusting our count: a `copytruncate` logrotate
            // may have emptied the file behind our back.
            self.good = self.file.metadata()?.len();
        }
        match self.file.write_all(batch) {
            Ok(()) => {
                self.good += batch.len() as u64;
                Ok(())
            }
            Err(e) => {
                // `write_all` may have written part of the batch before failing: cut it off.
                self.repair();
                Err(e)
            }
        }
    }

    /// Cuts the file back to its last complete line; remembers to retry if that fails.
    fn repair(&mut self) {
        self.damaged = self.file.set_len(self.good).is_err();
    }
}

/// Finds where the complete records of `window` (the end of a log file) end, and the `seq` of
/// the last one. `whole` says whether the window starts at the beginning of the file; if not,
/// its first partial line is never judged (nor cut into).
///
/// Cut off: bytes after the last newline (a line never finished), then trailing lines that
/// are not valid JSON (a torn write that a newline followed). A complete JSON line is never
/// removed.
pub(super) fn scan_tail(window: &[u8], whole: bool) -> Tail {
    // The first line that can be judged starts after the first newline, unless the window
    // is the whole file.
    let floor = if whole {
        0
    } else {
        window
            .iter()
            .position(|&b| b == b'\n')
            .map_or(window.len(), |i| i + 1)
    };
    let mut keep = window
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
        .max(floor);
    while keep > floor {
        // The last line is window[begin..keep - 1] (without its newline).
        let begin = window[..keep - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
            .max(floor);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&window[begin..keep - 1]) {
            if v.is_object() {
                let last_seq = v.get("seq").and_then(serde_json::Value::as_u64);
                return Tail { keep, last_seq };
            }
        }
        keep = begin;
    }
    Tail {
        keep,
        last_seq: None,
    }
}
