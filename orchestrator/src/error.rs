//! The one place where errors become HTTP responses. Bodies are `{error, code, request_id}`;
//! internal details are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::middleware::current_request_id;
use crate::views::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("Song already exists")]
    Duplicate { file_id: String },
    /// The request is valid but the resource's state does not allow it now (`code` says why).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The upload would take its owner past `quota.stored_bytes` (413 `storage_quota`).
    #[error("{0}")]
    StorageQuota(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests; retry in {retry_after_seconds} s")]
    TooManyRequests { retry_after_seconds: u64 },
    /// A per-user limit other than the request rate (`code` names it; 429).
    #[error("{message}")]
    Limit { code: &'static str, message: String },
    /// A `Range` that starts beyond the object's end (416, with `Content-Range: bytes */size`).
    #[error("the range is outside the object's {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    /// The handler did not answer within `http.request_timeout_seconds`.
    #[error("the request was not answered within {0} s; retry later")]
    Timeout(u64),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Duplicate { .. } => (StatusCode::CONFLICT, "duplicate"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::StorageQuota(_) => (StatusCode::PAYLOAD_TOO_LARGE, "storage_quota"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Limit { code, .. } => (StatusCode::TOO_MANY_REQUESTS, code),
            ApiError::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<roar_common::kafka::KafkaError> for ApiError {
    fn from(e: roar_common::kafka::KafkaError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Unavailable(format!("read model: {e}"))
    }
}

/// A file's data key could not be read or written (`roar_projections::keys`): the database's
/// errors are retryable like any read-model error, the rest are ours.
impl From<roar_projections::keys::KeyError> for ApiError {
    fn from(e: roar_projections::keys::KeyError) -> Self {
        match e {
            roar_projections::keys::KeyError::Db(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        let request_id = current_request_id();
        let message = match &self {
            ApiError::Internal(detail) | ApiError::Unavailable(detail) => {
                tracing::error!(%request_id, error = %detail, "request failed");
                if matches!(self, ApiError::Internal(_)) {
                    "internal error".to_string()
                } else {
                    "a dependency is unavailable; retry later".to_string()
                }
            }
            other => other.to_string(),
        };
        let file_id = match &self {
            ApiError::Duplicate { file_id } => Some(file_id.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: message,
            code: code.to_string(),
            request_id,
            file_id,
        };
        let mut resp = (status, Json(body)).into_response();
        match &self {
            ApiError::TooManyRequests {
                retry_after_seconds,
            } => {
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(*retry_after_seconds),
                );
            }
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(v) = axum::http::HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut()
                        .insert(axum::http::header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        resp
    }
}
