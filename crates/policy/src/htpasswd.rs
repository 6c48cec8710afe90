//! Proxy users from an Apache `htpasswd` file, and the `Proxy-Authorization: Basic` header.
//!
//! [`Htpasswd::parse`] reads the formats Apache's `htpasswd` tool writes — bcrypt (`-B`,
//! `$2y$`, plus `$2a$`/`$2b$` from other tools), Apache MD5 (`-m`, `$apr1$`, and the `$1$` MD5-crypt
//! that Apache accepts through the system `crypt`), SHA-256/512-crypt (`-2`/`-5`, `$5$`/`$6$`)
//! and unsalted SHA-1 (`-s`, `{SHA}`) — and refuses plain-text passwords (`-p`) and legacy DES
//! `crypt` (`-d`), which looks at only the first 8 characters of a password. Every bad line is
//! reported with its file and line; no message ever echoes a hash or a password.
//!
//! Parsing only checks each hash's shape: no hashing happens until [`Htpasswd::verify`], so a
//! large file loads fast. Verifying is deliberately slow for bcrypt and SHA-crypt (milliseconds to
//! seconds, depending on the cost in the entry), so the data path goes through a
//! [`VerifiedCache`] rather than calling [`Htpasswd::verify`] on every request.
//!
//! This module reads no file and no clock: the caller passes the text in, and the key of the
//! cache.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

#[cfg(test)]
mod tests;

/// Longest password [`Htpasswd::verify`] hashes; longer ones are refused without hashing.
///
/// Apache's `htpasswd` itself refuses passwords over 255 bytes. The bound matters because
/// SHA-crypt's cost grows with the square of the password length (Drepper's `SHA-crypt.txt`,
/// step 14 hashes the password once per password byte), so an unbounded header would be a cheap
/// way to burn the gateway's CPU.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Highest bcrypt cost accepted: 17 is the most `htpasswd -C` allows, and takes seconds per check
/// already. Higher costs (up to 31 in the format) would let one entry stall a worker for minutes.
pub const MAX_BCRYPT_COST: u32 = 17;

/// Highest SHA-crypt `rounds=` accepted (the format allows 999,999,999): about the work of the
/// highest bcrypt cost, for the same reason as [`MAX_BCRYPT_COST`].
pub const MAX_SHA_CRYPT_ROUNDS: usize = 10_000_000;

/// Longest `Proxy-Authorization` value [`parse_basic`] looks at: a generous bound on user name and
/// password (both base64-encoded) that keeps decoding cheap.
const MAX_BASIC_HEADER_LEN: usize = 4096;

/// The alphabet of `crypt`'s base64 (`./0-9A-Za-z`), used by MD5-crypt, SHA-crypt and DES crypt.
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SHA-crypt's default rounds when the hash has no `rounds=` field (`SHA-crypt.txt`).
const SHA_CRYPT_DEFAULT_ROUNDS: usize = 5_000;

/// The users of an htpasswd file and their password hashes.
///
/// `Debug` prints the user names only, never a hash.
#[derive(Clone, Default)]
pub struct Htpasswd {
    /// Sorted so [`Htpasswd::users`] is stable and the decoy entry of `verify` is well-defined.
    entries: BTreeMap<String, Entry>,
}

/// One bad line of an htpasswd file.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("{file}:{line}: {}{kind}", user_prefix(.user.as_deref()))]
pub struct HtpasswdIssue {
    /// The file name, as given to [`Htpasswd::parse`].
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The user the line is for, when the line got as far as naming one.
    pub user: Option<String>,
    /// What is wrong with the line.
    pub kind: EntryError,
}

/// Why a line of an htpasswd file was refused. Messages never include the hash or password.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    /// A line that is neither blank, nor a comment, nor `user:hash`.
    #[error("expected `user:password-hash`, found no `:`")]
    MissingColon,
    /// `:hash` with nothing before the colon.
    #[error("the user name is empty")]
    EmptyUser,
    /// A control character in the user name, which `Proxy-Authorization` can never carry
    /// (RFC 7617 §2).
    #[error("the user name contains a control character")]
    ControlCharInUser,
    /// The same user on two lines; Apache would silently use the first, which hides mistakes.
    #[error("user is already defined on line {first_line}")]
    DuplicateUser {
        /// Where the user was first defined.
        first_line: usize,
    },
    /// `user:` with nothing after the colon.
    #[error("no password hash after `:`")]
    EmptyHash,
    /// Not any known hash: a plain-text password (`htpasswd -p`), which sluice never accepts.
    #[error(
        "not a password hash; plain-text passwords are refused (create the entry with `htpasswd -B`)"
    )]
    PlainText,
    /// 13 characters of the `crypt` alphabet: legacy DES `crypt` (`htpasswd -d`).
    #[error(
        "legacy DES crypt hash refused: it uses only the first 8 characters of a password \
         (re-create the entry with `htpasswd -B`)"
    )]
    LegacyCrypt,
    /// A `$id$…` hash of a scheme this module does not implement.
    #[error(
        "unsupported password hash scheme (supported: bcrypt $2y$/$2a$/$2b$, MD5 $apr1$/$1$, \
         SHA-crypt $5$/$6$, {{SHA}})"
    )]
    UnsupportedScheme,
    /// A known scheme whose hash does not have the scheme's shape.
    #[error("malformed {scheme} hash: {reason}")]
    Malformed {
        /// The scheme, as in [`HashScheme::name`].
        scheme: &'static str,
        /// Which part is wrong.
        reason: &'static str,
    },
    /// A cost or round count so high that each login would stall a worker.
    #[error("{scheme} cost {cost} is above the maximum of {max}: every login would take too long")]
    TooSlow {
        /// The scheme, as in [`HashScheme::name`].
        scheme: &'static str,
        /// The cost (bcrypt) or rounds (SHA-crypt) in the entry.
        cost: u64,
        /// The highest accepted.
        max: u64,
    },
}

/// The hash scheme of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashScheme {
    /// bcrypt, `$2y$` (`htpasswd -B`), `$2a$` or `$2b$`.
    Bcrypt,
    /// Apache's MD5-crypt variant, `$apr1$` (`htpasswd -m`, the tool's default).
    Apr1,
    /// FreeBSD MD5-crypt, `$1$` (what `openssl passwd -1` and old `crypt(3)` write).
    Md5Crypt,
    /// SHA-256-crypt, `$5$` (`htpasswd -2`).
    Sha256Crypt,
    /// SHA-512-crypt, `$6$` (`htpasswd -5`).
    Sha512Crypt,
    /// Unsalted SHA-1, `{SHA}` (`htpasswd -s`): weak, kept for old files.
    Sha1,
}

/// Caches the outcome of password checks so bcrypt and SHA-crypt run once per (user, password,
/// entry) rather than once per request.
///
/// The key of a cached outcome is SHA-256 over a secret key, the user, the entry's stored hash and
/// the password: a file reload that changes a user's hash makes the old outcomes unreachable (an
/// old password stops working at once), and a memory dump does not hand out unsalted password
/// hashes. At capacity, failed checks are evicted first, so a flood of wrong passwords cannot
/// push real users' successes out.
pub struct VerifiedCache {
    key: [u8; 32],
    capacity: usize,
    outcomes: Mutex<HashMap<[u8; 32], bool>>,
}

/// A user's stored hash: its text (for bcrypt, and to key the cache) and what parsing found.
#[derive(Clone)]
struct Entry {
    line: usize,
    raw: Box<str>,
    hash: Hash,
}

/// A hash, checked for shape at parse time so verification cannot meet a malformed one.
#[derive(Clone)]
enum Hash {
    /// The whole `$2y$…` string, which the bcrypt crate parses again.
    Bcrypt,
    /// `magic` is `$apr1$` or `$1$`; `digest` is the 22-character encoded result.
    Md5Crypt {
        magic: &'static str,
        salt: Box<str>,
        digest: Box<str>,
    },
    /// SHA-crypt; `digest` is the encoded result (43 characters for SHA-256, 86 for SHA-512).
    ShaCrypt {
        sha512: bool,
        rounds: usize,
        salt: Box<str>,
        digest: Box<str>,
    },
    /// The decoded SHA-1 digest.
    Sha1([u8; 20]),
}

// === impl Htpasswd ===

impl Htpasswd {
    /// Parses the text of an htpasswd file; `file` names it in issues.
    ///
    /// Follows Apache's reading (`mod_authn_file` with `ap_cfg_getline`): each line is trimmed of
    /// surrounding whitespace (so CRLF files work), blank lines and lines starting with `#` are
    /// skipped, the user name ends at the first `:` and the hash at the next `:` (anything after it
    /// is ignored, as Apache does). Unlike Apache, a user defined twice is an issue rather than
    /// "first line wins". Returns every issue at once, or the users when there are none.
    pub fn parse(text: &str, file: &str) -> Result<Self, Vec<HtpasswdIssue>> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let mut issues = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut issue = |user: Option<&str>, kind| {
                issues.push(HtpasswdIssue {
                    file: file.to_owned(),
                    line: line_no,
                    user: user.map(str::to_owned),
                    kind,
                });
            };
            let Some((user, rest)) = line.split_once(':') else {
                issue(None, EntryError::MissingColon);
                continue;
            };
            if user.is_empty() {
                issue(None, EntryError::EmptyUser);
                continue;
            }
            if user.chars().any(char::is_control) {
                // The name is not echoed: a control character would garble the report.
                issue(None, EntryError::ControlCharInUser);
                continue;
            }
            let raw = rest.split(':').next().unwrap_or_default();
            let hash = match parse_hash(raw) {
                Ok(hash) => hash,
                Err(kind) => {
                    issue(Some(user), kind);
                    continue;
                }
            };
            if let Some(first) = entries.get(user) {
                issue(
                    Some(user),
                    EntryError::DuplicateUser {
                        first_line: first.line,
                    },
                );
                continue;
            }
            let entry = Entry {
                line: line_no,
                raw: raw.into(),
                hash,
            };
            entries.insert(user.to_owned(), entry);
        }
        if issues.is_empty() {
            Ok(Self { entries })
        } else {
            Err(issues)
        }
    }

    /// Whether `password` is `user`'s password. Passwords longer than [`MAX_PASSWORD_LEN`] or
    /// containing NUL never are.
    ///
    /// Digests are compared in constant time. An unknown user costs about as much as a known one
    /// (a decoy entry is checked and its result thrown away), so timing does not tell which user
    /// names exist. Slow by design for bcrypt and SHA-crypt: callers on the data path should go
    /// through [`VerifiedCache::verify`].
    pub fn verify(&self, user: &str, password: &str) -> bool {
        // `htpasswd` and every `crypt(3)` stop at a NUL, so no stored hash covers a password with
        // one; bcrypt here would hash past it and disagree with Apache.
        if password.len() > MAX_PASSWORD_LEN || password.contains('\0') {
            return false;
        }
        match self.entries.get(user) {
            Some(entry) => entry.verify(password.as_bytes()),
            None => {
                if let Some(decoy) = self.entries.values().next() {
                    std::hint::black_box(decoy.verify(password.as_bytes()));
                }
                false
            }
        }
    }

    /// The user names, sorted.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The hash scheme of `user`'s entry, e.g. to warn about weak `{SHA}` entries.
    pub fn scheme(&self, user: &str) -> Option<HashScheme> {
        self.entries
            .get(user)
            .map(|entry| entry.hash.scheme(&entry.raw))
    }

    /// How many users the file defines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file defines no user at all (then nobody can authenticate).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

// === impl HashScheme ===

impl HashScheme {
    /// A short stable name, e.g. `bcrypt`, `apr1`, `sha512-crypt`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bcrypt => "bcrypt",
            Self::Apr1 => "apr1",
            Self::Md5Crypt => "md5-crypt",
            Self::Sha256Crypt => "sha256-crypt",
            Self::Sha512Crypt => "sha512-crypt",
            Self::Sha1 => "sha1",
        }
    }
}

// === impl Entry ===

impl Entry {
    fn verify(&self, password: &[u8]) -> bool {
        match &self.hash {
            // The crate compares in constant time and, like Apache, uses only the first 72 bytes
            // of the password. `parse_hash` checked the shape, so an error here is a cost the
            // crate refuses, which can only mean "no".
            Hash::Bcrypt => bcrypt::verify(password, &self.raw).unwrap_or(false),
            Hash::Md5Crypt {
                magic,
                salt,
                digest,
            } => ct_eq(
                md5_crypt(password, magic, salt.as_bytes()).as_bytes(),
                digest.as_bytes(),
            ),
            Hash::ShaCrypt {
                sha512,
                rounds,
                salt,
                digest,
            } => sha_crypt(*sha512, password, salt.as_bytes(), *rounds)
                .is_some_and(|computed| ct_eq(computed.as_bytes(), digest.as_bytes())),
            Hash::Sha1(expected) => ct_eq(&Sha1::digest(password), expected),
        }
    }
}

// === impl Hash ===

impl Hash {
    fn scheme(&self, raw: &str) -> HashScheme {
        match self {
            Self::Bcrypt => HashScheme::Bcrypt,
            Self::Md5Crypt { .. } if raw.starts_with("$apr1$") => HashScheme::Apr1,
            Self::Md5Crypt { .. } => HashScheme::Md5Crypt,
            Self::ShaCrypt { sha512: false, .. } => HashScheme::Sha256Crypt,
            Self::ShaCrypt { sha512: true, .. } => HashScheme::Sha512Crypt,
            Self::Sha1(_) => HashScheme::Sha1,
        }
    }
}

// === impl VerifiedCache ===

impl VerifiedCache {
    /// A cache of at most `capacity` outcomes (0 disables caching). `key` must be secret and
    /// random, drawn once per process: it keeps cached keys from being plain password hashes.
    pub fn new(capacity: usize, key: [u8; 32]) -> Self {
        Self {
            key,
            capacity,
            outcomes: Mutex::new(HashMap::new()),
        }
    }

    /// [`Htpasswd::verify`], remembering the outcome for this user, password and stored hash.
    ///
    /// The lock is not held while hashing, so two first requests with the same credentials may
    /// both hash; that costs time, never correctness.
    pub fn verify(&self, htpasswd: &Htpasswd, user: &str, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        // An unknown user gets a key too, so repeated attempts with it do not each pay for the
        // decoy check; adding the user later changes the key.
        let stored = htpasswd.entries.get(user).map_or("", |entry| &*entry.raw);
        let key = self.outcome_key(user, stored, password);
        if let Some(&outcome) = self.lock().get(&key) {
            return outcome;
        }
        let outcome = htpasswd.verify(user, password);
        self.insert(key, outcome);
        outcome
    }

    /// How many outcomes are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no outcome is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets every outcome.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn insert(&self, key: [u8; 32], outcome: bool) {
        if self.capacity == 0 {
            return;
        }
        let mut outcomes = self.lock();
        if outcomes.len() >= self.capacity && !outcomes.contains_key(&key) {
            outcomes.retain(|_, &mut ok| ok);
            if outcomes.len() >= self.capacity {
                outcomes.clear();
            }
        }
        outcomes.insert(key, outcome);
    }

    /// Length-prefixed fields, so no two different triples hash the same input.
    fn outcome_key(&self, user: &str, stored: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        for field in [user, stored] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        }
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], bool>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that matters:
        // every entry is a complete outcome.
        self.outcomes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

// === Basic authentication ===

/// Parses a `Proxy-Authorization: Basic <base64>` header value (RFC 7617) into (user, password).
///
/// The scheme name is case-insensitive (RFC 9110 §11.1), padding is optional, and the user ends at
/// the first `:` (RFC 7617 §2: a user-id cannot contain one; a password can). `None` when the
/// value is not Basic, not base64, not UTF-8, has no `:`, an empty user, or a control character
/// (which RFC 7617 §2 forbids in both parts).
pub fn parse_basic(header_value: &[u8]) -> Option<(String, String)> {
    /// Standard alphabet; accepts both padded and unpadded input, since clients differ.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    if header_value.len() > MAX_BASIC_HEADER_LEN {
        return None;
    }
    let value = header_value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(5)?;
    // `Basic` then at least one space (RFC 9110 §11.4: `auth-scheme 1*SP token68`).
    let credentials = rest.strip_prefix(b" ")?;
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = LENIENT.decode(credentials.trim_ascii_start()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() || decoded.chars().any(char::is_control) {
        return None;
    }
    Some((user.to_owned(), password.to_owned()))
}

// === parsing hashes ===

fn parse_hash(raw: &str) -> Result<Hash, EntryError> {
    if raw.is_empty() {
        return Err(EntryError::EmptyHash);
    }
    if let Some(b64) = raw.strip_prefix("{SHA}") {
        return parse_sha1(b64);
    }
    for prefix in ["$2y$", "$2a$", "$2b$"] {
        if raw.starts_with(prefix) {
            return parse_bcrypt(raw);
        }
    }
    for magic in ["$apr1$", "$1$"] {
        if let Some(rest) = raw.strip_prefix(magic) {
            return parse_md5_crypt(magic, rest);
        }
    }
    if let Some(rest) = raw.strip_prefix("$5$") {
        return parse_sha_crypt(false, rest);
    }
    if let Some(rest) = raw.strip_prefix("$6$") {
        return parse_sha_crypt(true, rest);
    }
    if raw.starts_with('$') {
        return Err(EntryError::UnsupportedScheme);
    }
    // DES crypt is 2 salt characters and 11 of digest, all from the crypt alphabet. A 13-character
    // plain-text password can look the same; both are refused, so the message for the likelier
    // one is enough.
    if raw.len() == 13 && in_crypt_alphabet(raw) {
        return Err(EntryError::LegacyCrypt);
    }
    Err(EntryError::PlainText)
}

fn parse_sha1(b64: &str) -> Result<Hash, EntryError> {
    let malformed = |reason| EntryError::Malformed {
        scheme: HashScheme::Sha1.name(),
        reason,
    };
    let digest = STANDARD.decode(b64).map_err(|_| malformed("not base64"))?;
    let digest = digest
        .try_into()
        .map_err(|_| malformed("not a 20-byte SHA-1 digest"))?;
    Ok(Hash::Sha1(digest))
}

/// `$2y$NN$` + 22 characters of salt + 31 of digest, in bcrypt's own base64 alphabet (which has the
/// same characters as `crypt`'s, in another order).
fn parse_bcrypt(raw: &str) -> Result<Hash, EntryError> {
    let scheme = HashScheme::Bcrypt.name();
    let malformed = |reason| EntryError::Malformed { scheme, reason };
    let bytes = raw.as_bytes();
    if bytes.len() != 60 || bytes[6] != b'$' {
        return Err(malformed("expected `$2y$NN$` and 53 characters"));
    }
    let cost = raw
        .get(4..6)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u32>().ok())
        .ok_or(malformed("the cost is not two digits"))?;
    if cost < 4 {
        return Err(malformed("the cost is below 4"));
    }
    if cost > MAX_BCRYPT_COST {
        return Err(EntryError::TooSlow {
            scheme,
            cost: cost.into(),
            max: MAX_BCRYPT_COST.into(),
        });
    }
    if !in_crypt_alphabet(&bytes[7..]) {
        return Err(malformed(
            "salt or digest has a character outside `./A-Za-z0-9`",
        ));
    }
    Ok(Hash::Bcrypt)
}

/// `$apr1$` or `$1$`, then up to 8 characters of salt, `$`, and 22 characters of digest.
fn parse_md5_crypt(magic: &'static str, rest: &str) -> Result<Hash, EntryError> {
    let scheme = if magic == "$1$" {
        HashScheme::Md5Crypt.name()
    } else {
        HashScheme::Apr1.name()
    };
    let malformed = |reason| EntryError::Malformed { scheme, reason };
    let (salt, digest) = rest
        .split_once('$')
        .ok_or(malformed("no `$` after the salt"))?;
    // Longer salts are cut to 8 characters when hashing, so the stored hash would never match.
    if salt.len() > 8 {
        return Err(malformed("the salt is longer than 8 characters"));
    }
    if digest.len() != 22 || !in_crypt_alphabet(digest) {
        return Err(malformed(
            "the digest is not 22 characters of `./A-Za-z0-9`",
        ));
    }
    Ok(Hash::Md5Crypt {
        magic,
        salt: salt.into(),
        digest: digest.into(),
    })
}

/// `$5$` or `$6$`, an optional `rounds=N$`, up to 16 characters of salt, `$`, and the digest.
fn parse_sha_crypt(sha512: bool, rest: &str) -> Result<Hash, EntryError> {
    let scheme = if sha512 {
        HashScheme::Sha512Crypt.name()
    } else {
        HashScheme::Sha256Crypt.name()
    };
    let malformed = |reason| EntryError::Malformed { scheme, reason };
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(rest) => {
            let (digits, rest) = rest
                .split_once('$')
                .ok_or(malformed("no `$` after `rounds=`"))?;
            let rounds = Some(digits)
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<usize>().ok())
                .ok_or(malformed("`rounds=` is not a number"))?;
            (rounds, rest)
        }
        None => (SHA_CRYPT_DEFAULT_ROUNDS, rest),
    };
    // glibc raises fewer than 1000 rounds to 1000 and writes that, so a smaller count was not
    // written by a conforming implementation.
    if rounds < sha_crypt::ROUNDS_MIN {
        return Err(malformed("`rounds=` is below 1000"));
    }
    if rounds > MAX_SHA_CRYPT_ROUNDS {
        return Err(EntryError::TooSlow {
            scheme,
            cost: rounds as u64,
            max: MAX_SHA_CRYPT_ROUNDS as u64,
        });
    }
    let (salt, digest) = rest
        .split_once('$')
        .ok_or(malformed("no `$` after the salt"))?;
    // Longer salts are cut to 16 characters when hashing, so the stored hash would never match.
    if salt.len() > 16 {
        return Err(malformed("the salt is longer than 16 characters"));
    }
    let digest_len = if sha512 { 86 } else { 43 };
    if digest.len() != digest_len || !in_crypt_alphabet(digest) {
        return Err(malformed("the digest has the wrong length or characters"));
    }
    Ok(Hash::ShaCrypt {
        sha512,
        rounds,
        salt: salt.into(),
        digest: digest.into(),
    })
}

fn in_crypt_alphabet(s: impl AsRef<[u8]>) -> bool {
    s.as_ref().iter().all(|b| CRYPT_ALPHABET.contains(b))
}

// === hashing ===

/// MD5-crypt as designed by Poul-Henning Kamp for FreeBSD (`$1$`, "md5crypt") and as adopted by
/// Apache with another magic string (`$apr1$`, APR's `apr_md5_encode` in `crypto/apr_md5.c`).
/// Returns the 22-character encoded digest (without magic and salt).
fn md5_crypt(password: &[u8], magic: &str, salt: &[u8]) -> String {
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();

    let mut context = Md5::new()
        .chain_update(password)
        .chain_update(magic)
        .chain_update(salt);
    // One byte of the alternate digest per password byte, 16 at a time.
    for chunk in password.chunks(16) {
        context.update(&alternate[..chunk.len()]);
    }
    // For each bit of the length, low to high: a NUL byte when set, else the first password
    // byte. (The original meant to add the digest's first byte but had a bug everyone keeps.)
    let mut length = password.len();
    while length != 0 {
        if length & 1 == 1 {
            context.update([0u8]);
        } else {
            context.update(&password[..1]);
        }
        length >>= 1;
    }
    let mut digest = context.finalize();

    // 1000 rounds to slow down brute force, mixing password, salt and digest in a fixed pattern.
    for round in 0..1000 {
        let mut context = Md5::new();
        if round % 2 == 1 {
            context.update(password);
        } else {
            context.update(digest);
        }
        if round % 3 != 0 {
            context.update(salt);
        }
        if round % 7 != 0 {
            context.update(password);
        }
        if round % 2 == 1 {
            context.update(digest);
        } else {
            context.update(password);
        }
        digest = context.finalize();
    }

    // The digest bytes go out in this permuted order, 3 bytes as 4 characters, then the last
    // byte as 2 characters.
    let d = digest;
    let mut out = String::with_capacity(22);
    for [a, b, c] in [[0, 6, 12], [1, 7, 13], [2, 8, 14], [3, 9, 15], [4, 10, 5]] {
        let group = (u32::from(d[a]) << 16) | (u32::from(d[b]) << 8) | u32::from(d[c]);
        push_crypt64(&mut out, group, 4);
    }
    push_crypt64(&mut out, u32::from(d[11]), 2);
    out
}

/// Appends the low `chars * 6` bits of `value` in `crypt`'s base64, least significant first.
fn push_crypt64(out: &mut String, mut value: u32, chars: usize) {
    for _ in 0..chars {
        out.push(char::from(CRYPT_ALPHABET[(value & 0x3f) as usize]));
        value >>= 6;
    }
}

/// SHA-crypt (Ulrich Drepper, `SHA-crypt.txt`) through RustCrypto's `sha-crypt`: the encoded
/// digest, without prefix, rounds or salt. `None` only for a rounds count the crate refuses, which
/// parsing already ruled out.
fn sha_crypt(sha512: bool, password: &[u8], salt: &[u8], rounds: usize) -> Option<String> {
    if sha512 {
        let params = sha_crypt::Sha512Params::new(rounds).ok()?;
        sha_crypt::sha512_crypt_b64(password, salt, &params).ok()
    } else {
        let params = sha_crypt::Sha256Params::new(rounds).ok()?;
        sha_crypt::sha256_crypt_b64(password, salt, &params).ok()
    }
}

/// Compares in time that depends only on the lengths, which each format fixes.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

fn user_prefix(user: Option<&str>) -> String {
    user.map(|u| format!("user {u:?}: ")).unwrap_or_default()
}
