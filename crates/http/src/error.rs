//! The one error type every handler returns. It renders as `{"detail": "…"}` with the matching status, which is the
//! shape both real clients (the MaxiDOM extension and the TopoForge dashboard) display to their users.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vigil_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    /// 401, with `WWW-Authenticate: Bearer` as OAuth2 clients expect.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: a JSON route was sent a form or plain text.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: the request is well-formed HTTP but its body or parameters do not fit the schema.
    #[error("{0}")]
    Unprocessable(String),
    /// 429 with `Retry-After` (seconds).
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after_secs: u64,
    },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else that is our fault; logged in full, reported to the client as a plain 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Handlers return this.
pub type ApiResult<T> = Result<T, Error>;

impl Error {
    pub fn not_found(detail: impl Into<String>) -> Self {
        Error::NotFound(detail.into())
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Error::Unprocessable(detail.into())
    }

    /// A failure that is our fault, keeping `err` and its whole `source()` chain for the log (the client sees only
    /// "Internal server error"). Takes any `std::error::Error` or an `anyhow::Error` (add context with
    /// `anyhow::Context` first when the error alone does not say what was being done).
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Error::Internal(err.into())
    }

    /// [`Error::internal`] with what was being done, kept as the chain's first link (`analysis task failed: …`).
    pub fn internal_in(doing: &'static str, err: impl Into<anyhow::Error>) -> Self {
        Error::Internal(err.into().context(doing))
    }

    /// [`Error::internal`] for a failure that has no error value, only a description (a panic, a closed channel).
    pub fn internal_msg(
        detail: impl std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
    ) -> Self {
        Error::Internal(anyhow::Error::msg(detail))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::Store(StoreError::Conflict(_)) => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Error::Store(StoreError::Conflict(_)) => "Conflict with existing data.".to_owned(),
            Error::Store(e) => {
                tracing::error!(error = %chain(e), "database error");
                "Internal server error".to_owned()
            }
            Error::Internal(e) => {
                tracing::error!(error = %chain(e.as_ref()), "internal error");
                "Internal server error".to_owned()
            }
            Error::Unavailable(e) => {
                tracing::warn!(error = %e, "service unavailable");
                "Service temporarily unavailable".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (status, axum::Json(json!({ "detail": detail }))).into_response();
        match self {
            Error::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::TooManyRequests {
                retry_after_secs, ..
            } => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
            }
            _ => {}
        }
        response
    }
}

/// `err: its source: its source's source…` on one line, so a log line says why, not just what, failed.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        // `#[error(transparent)]` and "{0}"-style wrappers repeat their source's text; say it once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn renders_detail_and_status() {
        let r = Error::not_found("Model not found.").into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_of(r).await, json!({"detail": "Model not found."}));
    }

    #[tokio::test]
    async fn unauthorized_carries_www_authenticate() {
        let r = Error::Unauthorized("Invalid credentials".into()).into_response();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[tokio::test]
    async fn too_many_requests_carries_retry_after() {
        let r = Error::TooManyRequests {
            detail: "slow down".into(),
            retry_after_secs: 42,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "42");
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_details() {
        let r = Error::internal_msg("connection string postgres://u:secret@h").into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_of(r).await, json!({"detail": "Internal server error"}));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("could not publish the model")]
    struct Outer(#[source] std::io::Error);

    #[tokio::test]
    async fn internal_errors_keep_their_source_chain_for_the_log_only() {
        let err = Error::internal(Outer(std::io::Error::other("disk full")));
        let source = std::error::Error::source(&err).expect("the wrapped error's source");
        assert_eq!(source.to_string(), "disk full");
        match &err {
            Error::Internal(e) => {
                assert_eq!(chain(e.as_ref()), "could not publish the model: disk full");
            }
            other => panic!("expected Internal, got {other:?}"),
        }
        let r = err.into_response();
        assert_eq!(body_of(r).await, json!({"detail": "Internal server error"}));
    }

    #[test]
    fn chain_names_each_cause_once() {
        let store = StoreError::DataDir {
            path: "/data".into(),
            source: std::io::Error::other("connection reset"),
        };
        let text = chain(&store);
        assert_eq!(text.matches("connection reset").count(), 1, "{text}");
    }
}
