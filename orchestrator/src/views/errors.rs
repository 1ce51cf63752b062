//! The error body and the error responses whole families of routes share.

use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

/// Every error: a message, a stable code, and the request id to quote in a report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// For people; may change between versions.
    pub error: String,
    /// For programs: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `duplicate`,
    /// `file_not_ready`, `file_failed`, `job_mismatch`, `not_pending`, `upload_missing`, `job_finished`, `job_not_retryable`,
    /// `too_large`, `unsupported_media_type`, `unprocessable`, `rate_limited`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// The request's `X-Request-ID`.
    pub request_id: String,
    /// Only on `duplicate` (409): the file that already holds this content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
}

/// What every route behind the bearer token can answer besides its own statuses: the
/// `User` extractor refuses the token, the per-user rate limit refuses the request, or a
/// dependency the route reads or writes (broker, database, object store, JWKS) is down.
#[derive(IntoResponses)]
#[allow(dead_code)] // only its OpenAPI description is used
pub enum AuthErrors {
    /// The token is missing, malformed, forged, expired, or for another audience.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Over the per-user rate limit (`http.rate_limit_per_second`, `http.rate_limit_burst`;
    /// `rate_limited`), or, where the route creates work, over a quota (`jobs_in_flight`,
    /// `jobs_per_day`, `pending_uploads`: `GET /me/usage` shows them; `webhooks`:
    /// `webhooks.max_per_user`).
    #[response(status = 429, headers(("Retry-After" = u64, description = "seconds until a request is allowed again")))]
    RateLimited(ErrorBody),
    /// A dependency (broker, read model, object store) is unavailable, token verification
    /// is not configured, or the request was not answered within
    /// `http.request_timeout_seconds` (`timeout`); retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What every route that takes a JSON body can answer before the handler runs (`ApiJson`).
#[derive(IntoResponses)]
#[allow(dead_code)] // only its OpenAPI description is used
pub enum JsonBodyErrors {
    /// The body is not well-formed JSON.
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// The body is larger than `http.max_body_bytes`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    NotJson(ErrorBody),
    /// The JSON does not have the documented shape (a missing or unknown field, a wrong type, a
    /// value out of range).
    #[response(status = 422)]
    Unprocessable(ErrorBody),
}
