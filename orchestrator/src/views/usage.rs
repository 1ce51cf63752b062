//! `GET /me/usage`: what the caller uses of their quotas.

use serde::Serialize;
use utoipa::ToSchema;

/// The caller's usage and limits (`quota.*`). Counts include requests the read model does not
/// show yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    /// Jobs queued or running.
    pub jobs_in_flight: u64,
    /// Jobs requested in the last 24 hours (retries included).
    pub jobs_today: u64,
    /// Bytes stored: uploads (a pending direct upload at its declared size) and job outputs.
    pub stored_bytes: u64,
    /// Direct uploads registered and not completed.
    pub pending_uploads: u64,
    pub limits: UsageLimits,
}

/// The limits; `null` where there is none.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct UsageLimits {
    /// 429 `jobs_in_flight` at this many.
    pub jobs_in_flight: Option<u64>,
    /// 429 `jobs_per_day` at this many.
    pub jobs_per_day: Option<u64>,
    /// 413 `storage_quota` for an upload that would pass it.
    pub stored_bytes: Option<u64>,
    /// 429 `pending_uploads` at this many.
    pub pending_uploads: Option<u64>,
}
