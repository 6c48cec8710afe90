//! What a failed API call answers: a status and `{"error": "..."}`, never internals (file
//! paths and SQL errors are logged, not sent).

use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sluice_store::StoreError;

/// A refused or failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over the limit.
    #[error("request body too large (limit {limit} bytes)")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body is not of the expected media type.
    #[error("expected Content-Type: {expected}")]
    UnsupportedMediaType {
        /// What was expected.
        expected: &'static str,
    },
    /// No such resource.
    #[error("not found")]
    NotFound,
    /// The caller's view is stale (`if_match` names an older policy).
    #[error("{0}")]
    Conflict(String),
    /// The call cannot be served now (the detail went to the log).
    #[error("{0}")]
    Unavailable(String),
    /// This gateway runs without an event store.
    #[error("no event store: pinning review is unavailable")]
    NoStore,
    /// Something failed on the server side; the detail went to the log.
    #[error("internal error ({0}); see the gateway log")]
    Internal(&'static str),
}

/// Largest request body accepted (security matrix AD-04): admin calls are small.
pub const BODY_LIMIT: usize = 64 * 1024;

// === impl ApiError ===

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoStore => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A store failure: the caller's mistakes become 400, the rest is logged and hidden.
    pub fn store(e: StoreError) -> Self {
        match e {
            StoreError::NoFingerprint { .. }
            | StoreError::AmbiguousFingerprint { .. }
            | StoreError::EmptyHost => Self::BadRequest(e.to_string()),
            other => {
                tracing::error!(error = %other, "event store call failed");
                Self::Internal("event store")
            }
        }
    }

    /// A blocking task that panicked or was cancelled.
    pub fn join(e: &tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "admin blocking task failed");
        Self::Internal("task")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType {
                expected: "application/json",
            },
            r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::TooLarge { limit: BODY_LIMIT }
            }
            r => Self::BadRequest(r.body_text()),
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(r: FormRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::TooLarge { limit: BODY_LIMIT };
        }
        if r.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return Self::UnsupportedMediaType {
                expected: "application/x-www-form-urlencoded",
            };
        }
        Self::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::BadRequest(r.body_text())
    }
}
