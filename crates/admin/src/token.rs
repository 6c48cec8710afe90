//! The admin token: what every non-public admin request must present, as
//! `Authorization: Bearer <token>` or through a UI session opened with it.
//!
//! Generated on first run into `<data-dir>/admin.token` (32 random bytes, hex, mode 0600), or
//! read from `admin.token_file`. Only a SHA-256 digest of it is kept in memory, and presented
//! tokens are compared by digest in constant time, so neither the comparison's timing nor its
//! length says anything about the token (security matrix AD-01).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// File name of the generated token inside the data dir.
pub const TOKEN_FILE: &str = "admin.token";

/// Why the token could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error("{path}: the admin token file is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The token is too short to resist guessing.
    #[error("{path}: the admin token is shorter than {MIN_LEN} characters")]
    TooShort {
        /// The file.
        path: PathBuf,
    },
    /// The generated file can be read by other users.
    #[error("{path}: admin token is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Shortest token accepted from `admin.token_file` (the generated one has 64 characters).
pub const MIN_LEN: usize = 16;

/// The admin token, kept as a digest.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

/// Where the token came from (for the config summary; never the token itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `admin.token_file`.
    Configured,
    /// Generated in the data dir.
    Generated,
}

// === impl Token ===

impl Token {
    /// A token from its text (surrounding whitespace ignored).
    pub fn new(text: &str) -> Self {
        Self {
            digest: Sha256::digest(text.trim().as_bytes()).into(),
        }
    }

    /// Whether `presented` is the token, in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }

    /// Reads `admin.token_file` when configured; else reads `<data_dir>/admin.token`, creating
    /// it (32 random bytes, hex, mode 0600) on first run.
    pub fn load_or_create(
        configured: Option<&Path>,
        data_dir: &Path,
    ) -> Result<(Self, TokenSource), TokenError> {
        if let Some(path) = configured {
            return Ok((read(path, false)?, TokenSource::Configured));
        }
        let path = data_dir.join(TOKEN_FILE);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok((read(&path, true)?, TokenSource::Generated)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok((create(&path)?, TokenSource::Generated))
            }
            Err(source) => Err(TokenError::Io { path, source }),
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print even the digest: it is enough to test guesses offline.
        f.write_str("Token(..)")
    }
}

fn read(path: &Path, strict_mode: bool) -> Result<Token, TokenError> {
    let io = |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        if strict_mode {
            return Err(TokenError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        // An administrator's own file (a mounted secret, say) may have its own conventions;
        // say so loudly instead of refusing to start.
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "admin token file is readable by group or others");
    }
    let text = fs::read_to_string(path).map_err(io)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_path_buf(),
        });
    }
    if text.len() < MIN_LEN {
        return Err(TokenError::TooShort {
            path: path.to_path_buf(),
        });
    }
    Ok(Token::new(text))
}

fn create(path: &Path) -> Result<Token, TokenError> {
    let io = |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes: [u8; 32] = rand::random();
    let text = hex::encode(bytes);
    // create_new: never follow or overwrite something that appeared in between.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    Ok(Token::new(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_with_mode_0600_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, src) = Token::load_or_create(None, dir.path()).unwrap();
        assert_eq!(src, TokenSource::Generated);
        let path = dir.path().join(TOKEN_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert!(a.verify(&text));
        let (b, _) = Token::load_or_create(None, dir.path()).unwrap();
        assert!(b.verify(text.trim()));
        assert!(!b.verify("nope"));
        assert!(!b.verify(""));
    }

    #[test]
    fn readable_generated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Token::load_or_create(None, dir.path()).unwrap();
        let path = dir.path().join(TOKEN_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Token::load_or_create(None, dir.path()).unwrap_err();
        assert!(matches!(err, TokenError::Permissions { .. }), "{err}");
    }

    #[test]
    fn configured_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        fs::write(&path, "  0123456789abcdef0123\n").unwrap();
        let (t, src) = Token::load_or_create(Some(&path), dir.path()).unwrap();
        assert_eq!(src, TokenSource::Configured);
        assert!(t.verify("0123456789abcdef0123"));
        assert!(!dir.path().join(TOKEN_FILE).exists());
        fs::write(&path, "short").unwrap();
        assert!(matches!(
            Token::load_or_create(Some(&path), dir.path()),
            Err(TokenError::TooShort { .. })
        ));
        fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Token::load_or_create(Some(&path), dir.path()),
            Err(TokenError::Empty { .. })
        ));
    }
}
