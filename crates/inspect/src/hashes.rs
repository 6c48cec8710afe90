//! SHA-256 blocklists (`block.hashes`): files of known-bad body hashes, and a streaming hasher
//! for bodies.
//!
//! A list file has one SHA-256 per line as 64 hex digits in either case; blank lines and
//! everything from a `#` on are ignored. The `sha256sum` output format (`<hash>  <file name>`,
//! or `<hash> *<file name>` in binary mode) is accepted too, since that is how hash lists are
//! often made: whatever follows the hash is taken as a file name. A line that does not start
//! with a hash is an error naming the file and line. Several files build one [`HashList`] that
//! remembers which file each hash came from, for the log.
//!
//! This module neither fetches lists nor watches the files; reload builds a new list.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

/// Hashes a body fed in chunks, as it arrives.
#[derive(Clone, Default)]
pub struct BodyHasher {
    sha: Sha256,
    len: u64,
}

/// Collects list files for a [`HashList`]. The first source that lists a hash is the one
/// reported.
#[derive(Default)]
pub struct HashListBuilder {
    hashes: HashMap<Digest, usize>,
    sources: Vec<String>,
}

/// An immutable set of blocked SHA-256 digests, each with the name of the list it came from.
#[derive(Clone, Default)]
pub struct HashList {
    hashes: HashMap<Digest, usize>,
    sources: Vec<String>,
}

/// Why a list could not be loaded.
#[derive(thiserror::Error, Debug)]
pub enum HashListError {
    /// The file could not be read.
    #[error("cannot read hash list {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Lines that are not a SHA-256 (every bad line, not only the first).
    #[error("{}", lines.iter().map(|l| format!("{list}:{}: {}", l.line, l.message)).collect::<Vec<_>>().join("\n"))]
    Syntax {
        /// The file (or other source name).
        list: String,
        /// The refused lines.
        lines: Vec<LineError>,
    },
}

/// One refused line of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// At most this many bad lines are reported per file: a file in the wrong format would
/// otherwise produce one error per line.
const MAX_LINE_ERRORS: usize = 20;

// === impl Digest ===

impl Digest {
    /// Parses 64 hex digits, either case.
    pub fn parse_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        (s.len() == 64 && hex::decode_to_slice(s, &mut out).is_ok()).then_some(Self(out))
    }

    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Digest {
    /// Lowercase hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

// === impl BodyHasher ===

impl BodyHasher {
    /// A hasher with nothing fed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.sha.update(chunk);
        self.len += chunk.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest(self.sha.finalize().into())
    }
}

// === impl HashListBuilder ===

impl HashListBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads and adds a list file; returns how many hashes it listed.
    pub fn add_file(&mut self, path: &Path) -> Result<usize, HashListError> {
        let text = std::fs::read_to_string(path).map_err(|source| HashListError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.add_str(&path.display().to_string(), &text)
    }

    /// Adds a list given as text; `source` names it in errors and in [`HashList::find`].
    /// Nothing is added if any line is refused.
    pub fn add_str(&mut self, source: &str, text: &str) -> Result<usize, HashListError> {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for (index, line) in text.lines().enumerate() {
            match parse_line(line) {
                Ok(Some(digest)) => found.push(digest),
                Ok(None) => {}
                Err(message) if errors.len() < MAX_LINE_ERRORS => errors.push(LineError {
                    line: index + 1,
                    message,
                }),
                Err(_) => {}
            }
        }
        if !errors.is_empty() {
            return Err(HashListError::Syntax {
                list: source.to_string(),
                lines: errors,
            });
        }
        let index = self.sources.len();
        self.sources.push(source.to_string());
        let count = found.len();
        for digest in found {
            self.hashes.entry(digest).or_insert(index);
        }
        Ok(count)
    }

    /// Freezes the list.
    pub fn build(mut self) -> HashList {
        self.hashes.shrink_to_fit();
        HashList {
            hashes: self.hashes,
            sources: self.sources,
        }
    }
}

/// A digest, nothing (blank or comment), or why the line is refused.
fn parse_line(line: &str) -> Result<Option<Digest>, String> {
    let line = line.split('#').next().unwrap_or("").trim();
    let mut words = line.split_whitespace();
    let Some(hash) = words.next() else {
        return Ok(None);
    };
    let digest = Digest::parse_hex(hash)
        .ok_or_else(|| format!("not a SHA-256 (64 hex digits): `{}`", truncate(hash, 80)))?;
    // Whatever follows is the file name of `sha256sum` output (`*name` in binary mode).
    Ok(Some(digest))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

// === impl HashList ===

impl HashList {
    /// Loads list files into one list.
    pub fn load(paths: &[PathBuf]) -> Result<Self, HashListError> {
        let mut builder = HashListBuilder::new();
        for path in paths {
            builder.add_file(path)?;
        }
        Ok(builder.build())
    }

    /// Whether `digest` is listed.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.hashes.contains_key(digest)
    }

    /// The source (file) that lists `digest`, if any.
    pub fn find(&self, digest: &Digest) -> Option<&str> {
        self.hashes
            .get(digest)
            .and_then(|&i| self.sources.get(i))
            .map(String::as_str)
    }

    /// Number of distinct digests.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether nothing is listed (then no body needs hashing).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

impl fmt::Debug for HashList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashList")
            .field("len", &self.hashes.len())
            .field("sources", &self.sources)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    #[test]
    fn streaming_hash_equals_one_shot() {
        let mut h = BodyHasher::new();
        for chunk in EICAR.chunks(7) {
            h.update(chunk);
        }
        assert_eq!(h.len(), EICAR.len() as u64);
        let digest = h.finish();
        assert_eq!(digest, Digest::of(EICAR));
        assert_eq!(digest.to_string(), EICAR_SHA256);
        assert_eq!(
            BodyHasher::new().finish().to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parses_lists_with_comments_case_and_sha256sum_format() {
        let text = format!(
            "# malware feed\n\n{}\n  {EICAR_SHA256}  eicar.com  # test file\n{} *binary.exe\n",
            EICAR_SHA256.to_uppercase(),
            "ab".repeat(32)
        );
        let mut b = HashListBuilder::new();
        assert_eq!(b.add_str("feed.txt", &text).unwrap(), 3);
        let list = b.build();
        assert_eq!(list.len(), 2);
        assert!(list.contains(&Digest::of(EICAR)));
        assert_eq!(list.find(&Digest::of(EICAR)), Some("feed.txt"));
        assert!(!list.contains(&Digest::of(b"clean")));
    }

    #[test]
    fn reports_every_bad_line_with_its_number() {
        let text = format!(
            "{EICAR_SHA256}\nnot-a-hash\n{}\n\n{}0\n",
            &EICAR_SHA256[1..],
            EICAR_SHA256
        );
        let err = HashListBuilder::new()
            .add_str("bad.txt", &text)
            .unwrap_err();
        let HashListError::Syntax { lines, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), [2, 3, 5]);
        assert!(
            err.to_string().starts_with("bad.txt:2: not a SHA-256"),
            "{err}"
        );
    }

    #[test]
    fn first_source_wins_and_files_load() {
        let dir = std::env::temp_dir().join(format!("sluice-hashes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.txt");
        let b = dir.join("b.txt");
        std::fs::write(&a, format!("{EICAR_SHA256}\n")).unwrap();
        std::fs::write(&b, format!("{EICAR_SHA256}\n{}\n", "cd".repeat(32))).unwrap();
        let list = HashList::load(&[a.clone(), b]).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(
            list.find(&Digest::of(EICAR)),
            Some(a.display().to_string().as_str())
        );
        let missing = HashList::load(&[dir.join("missing.txt")]).unwrap_err();
        assert!(missing.to_string().contains("missing.txt"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
