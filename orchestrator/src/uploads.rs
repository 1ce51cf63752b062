//! Read-your-writes for uploads. The read model answers "is this content already uploaded?"
//! only once the projector has applied the upload, so a repeat right after the first would be
//! accepted again. A row in `upload_claims` (the read model's database, written here before
//! the event) answers at once, on every replica, and lets one of two concurrent uploads of the
//! same content win:
//!
//! - a claim is taken (`INSERT … ON CONFLICT`) before the object is published and the event
//!   emitted, and confirmed with the event's consistency token once the broker has it;
//! - a send that fails releases it, so the client's retry is not refused as a duplicate;
//! - a claim never confirmed (the orchestrator died between the two) is taken over after
//!   [`STALE_CLAIM`]; until then another upload of the content is told the first is still
//!   being accepted (409 `upload_in_progress`, try again), never that it was accepted: the
//!   event of a claim whose holder died is never sent, so "duplicate" would lose the upload;
//! - a claim older than the file's deletion is taken over (the content may be uploaded again).

use chrono::{DateTime, Utc};
use roar_projections::FileRow;
use roar_schemas::{FileInfo, FileStatus};

use crate::{ApiError, AppState};

/// How long an unconfirmed claim blocks another upload of the same content: longer than any
/// upload's publish-and-send takes.
const STALE_CLAIM: chrono::Duration = chrono::Duration::seconds(60);

/// A claim this request holds until it is confirmed or released.
pub(crate) struct UploadClaim {
    file_id: String,
}

/// Takes the claim on `file_id`, or answers `Duplicate` when another upload of the content
/// holds it (or has been accepted). `existing` is the read model's row, if any.
pub(crate) async fn claim(
    s: &AppState,
    file_id: &str,
    existing: Option<&FileRow>,
) -> Result<UploadClaim, ApiError> {
    let deleted_at: Option<DateTime<Utc>> = existing
        .filter(|f| f.status == FileStatus::Deleted)
        .map(|f| f.updated_at);
    let now = Utc::now();
    let taken = sqlx::query(
        "INSERT INTO upload_claims (file_id, claimed_at, token) VALUES ($1, $2, NULL)
         ON CONFLICT (file_id) DO UPDATE SET claimed_at = $2, token = NULL
         WHERE (upload_claims.token IS NULL AND upload_claims.claimed_at < $3)
            OR upload_claims.claimed_at < $4",
    )
    .bind(file_id)
    .bind(now)
    .bind(now - STALE_CLAIM)
    .bind(deleted_at)
    .execute(&s.db)
    .await?
    .rows_affected()
        == 1;
    if taken {
        return Ok(UploadClaim {
            file_id: file_id.to_string(),
        });
    }
    Err(match holder(s, file_id).await? {
        Holder::Confirmed => ApiError::Duplicate {
            file_id: file_id.to_string(),
        },
        Holder::Unconfirmed | Holder::None => in_progress(),
    })
}

/// What holds the content's claim, as far as a newcomer is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Nothing (or only a claim a deletion or staleness released).
    None,
    /// An upload whose event the broker has: the content is accepted.
    Confirmed,
    /// An upload being accepted (or whose orchestrator died before the event: taken over
    /// after [`STALE_CLAIM`]).
    Unconfirmed,
}

async fn holder(s: &AppState, file_id: &str) -> Result<Holder, ApiError> {
    let token: Option<Option<String>> =
        sqlx::query_scalar("SELECT token FROM upload_claims WHERE file_id = $1")
            .bind(file_id)
            .fetch_optional(&s.db)
            .await?;
    Ok(match token {
        None => Holder::None,
        Some(Some(_)) => Holder::Confirmed,
        Some(None) => Holder::Unconfirmed,
    })
}

/// The answer to an upload of content another upload is still being accepted for.
pub(crate) fn in_progress() -> ApiError {
    ApiError::Conflict {
        code: "upload_in_progress",
        message: "an upload of this content is still being accepted; try again in a few seconds"
            .into(),
    }
}

/// Whether an upload of `file_id` was accepted, or is being accepted, after the read model's
/// `existing` row: a new upload ticket for it would be a duplicate, or must wait.
pub(crate) async fn claimed(
    s: &AppState,
    file_id: &str,
    existing: Option<&FileRow>,
) -> Result<Holder, ApiError> {
    let deleted_at = existing
        .filter(|f| f.status == FileStatus::Deleted)
        .map(|f| f.updated_at);
    let claim: Option<(DateTime<Utc>, bool)> = sqlx::query_as(
        "SELECT claimed_at, token IS NOT NULL FROM upload_claims
         WHERE file_id = $1 AND (token IS NOT NULL OR claimed_at >= $2)",
    )
    .bind(file_id)
    .bind(Utc::now() - STALE_CLAIM)
    .fetch_optional(&s.db)
    .await?;
    Ok(match claim {
        Some((c, confirmed)) if deleted_at.is_none_or(|d| c > d) => {
            if confirmed {
                Holder::Confirmed
            } else {
                Holder::Unconfirmed
            }
        }
        _ => Holder::None,
    })
}

impl UploadClaim {
    /// The upload's event is on the topic: the claim stands for good.
    pub(crate) async fn confirm(self, s: &AppState, token: &str) {
        let done = sqlx::query("UPDATE upload_claims SET token = $2 WHERE file_id = $1")
            .bind(&self.file_id)
            .bind(token)
            .execute(&s.db)
            .await;
        // The event is durable either way; an unconfirmed claim only blocks for STALE_CLAIM.
        if let Err(e) = done {
            tracing::warn!(file_id = %self.file_id, error = %e, "upload claim not confirmed");
        }
    }

    /// The upload failed before its event was sent: another try may claim the content.
    pub(crate) async fn release(self, s: &AppState) {
        let done = sqlx::query("DELETE FROM upload_claims WHERE file_id = $1 AND token IS NULL")
            .bind(&self.file_id)
            .execute(&s.db)
            .await;
        if let Err(e) = done {
            tracing::warn!(file_id = %self.file_id, error = %e, "upload claim not released");
        }
    }
}

/// Who registered a direct upload, and what: read by its signed PUT, whose link names no person.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Registration {
    pub owner: String,
    pub filename: String,
    pub mime: String,
    pub size: i64,
    pub sha256: String,
}

/// Records (or, registered again, replaces) the registration of `file_id` before its ticket
/// is answered.
pub(crate) async fn record_registration(
    s: &AppState,
    file_id: &str,
    info: &FileInfo,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO upload_registrations
           (file_id, owner, filename, mime, size, sha256, registered_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (file_id) DO UPDATE SET owner = $2, filename = $3, mime = $4, size = $5,
           sha256 = $6, registered_at = $7",
    )
    .bind(file_id)
    .bind(&info.owner)
    .bind(&info.filename)
    .bind(&info.mime)
    .bind(info.size)
    .bind(&info.sha256)
    .bind(Utc::now())
    .execute(&s.db)
    .await?;
    Ok(())
}

/// The registration of `file_id`, if it is recorded.
pub(crate) async fn registration(
    s: &AppState,
    file_id: &str,
) -> Result<Option<Registration>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT owner, filename, mime, size, sha256 FROM upload_registrations WHERE file_id = $1",
    )
    .bind(file_id)
    .fetch_optional(&s.db)
    .await?)
}

/// Forgets registrations whose links expired before `before` (the sweeper calls it).
pub(crate) async fn forget_registrations(
    s: &AppState,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM upload_registrations WHERE registered_at < $1")
        .bind(before)
        .execute(&s.db)
        .await?;
    Ok(r.rows_affected())
}
