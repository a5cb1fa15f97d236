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

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Error::Internal(anyhow::anyhow!("{detail}"))
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
                tracing::error!(error = %e, "database error");
                "Internal server error".to_owned()
            }
            Error::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
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
        let r = Error::internal("connection string postgres://u:secret@h").into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_of(r).await, json!({"detail": "Internal server error"}));
    }
}
