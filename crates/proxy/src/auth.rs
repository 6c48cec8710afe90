//! Proxy authentication: `Proxy-Authorization: Basic` checked against an htpasswd file when
//! `auth.htpasswd` is set. Hash checks (bcrypt is slow by design) run on the blocking pool and
//! their outcomes are cached, so the data path neither stalls nor re-hashes per request.
//! Passwords are never logged; only the user name reaches the access log.

use std::sync::Arc;

use http::Request;
use sluice_policy::htpasswd::{parse_basic, Htpasswd, VerifiedCache};

/// The credentials check of one configuration snapshot.
pub struct Auth {
    htpasswd: Arc<Htpasswd>,
    cache: Arc<VerifiedCache>,
    realm: String,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No (usable) `Proxy-Authorization` header.
    Missing,
    /// Wrong user or password.
    Failed,
}

impl AuthError {
    /// Stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "auth_required",
            Self::Failed => "auth_failed",
        }
    }
}

impl Auth {
    /// An authenticator over a parsed htpasswd file.
    pub fn new(htpasswd: Htpasswd, realm: String) -> Self {
        let key: [u8; 32] = rand::random();
        Self {
            htpasswd: Arc::new(htpasswd),
            cache: Arc::new(VerifiedCache::new(10_000, key)),
            realm,
        }
    }

    /// The `Proxy-Authenticate` challenge.
    pub fn challenge(&self) -> String {
        format!(
            "Basic realm=\"{}\", charset=\"UTF-8\"",
            self.realm.replace('"', "'")
        )
    }

    /// The authenticated user of a request.
    pub async fn check<B>(&self, req: &Request<B>) -> Result<String, AuthError> {
        let header = req
            .headers()
            .get(http::header::PROXY_AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let (user, password) = parse_basic(header.as_bytes()).ok_or(AuthError::Missing)?;
        let (htpasswd, cache) = (self.htpasswd.clone(), self.cache.clone());
        let name = user.clone();
        let ok = tokio::task::spawn_blocking(move || cache.verify(&htpasswd, &name, &password))
            .await
            .unwrap_or(false);
        if ok {
            Ok(user)
        } else {
            Err(AuthError::Failed)
        }
    }
}
