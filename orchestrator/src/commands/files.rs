//! File events: `FileRegistered` when a direct upload gets its ticket, `FileUploaded` once the
//! bytes are stored and checked (multipart, signed PUT, or a presigned PUT's completion), and
//! `FileDeleted` (reason `upload_expired`) when the sweeper gives up on a direct upload. Every
//! file event goes out through [`send`], which seals its personal fields ([`keys`]).

use chrono::{DateTime, Utc};
use roar_projections::keys;
use roar_schemas::topics::FILES;
use roar_schemas::{EventMeta, FileBody, FileEvent, FileInfo};

use super::consistency_token;
use crate::middleware::current_request_id;
use crate::uploads::UploadClaim;
use crate::ApiError;
use crate::AppState;

async fn emit(
    s: &AppState,
    actor: String,
    file_id: &str,
    body: FileBody,
) -> Result<String, ApiError> {
    let event = FileEvent {
        sealed: None,
        meta: EventMeta::new(current_request_id(), actor),
        file_id: file_id.to_string(),
        body,
    };
    send(s, event).await
}

/// Sends a file event, its personal fields (the filename; a generation's prompt) first sealed
/// with the file's data key, which is durable in Postgres before the event can be read.
pub(crate) async fn send(s: &AppState, mut event: FileEvent) -> Result<String, ApiError> {
    if keys::has_personal_fields(&event) {
        let key = keys::key_for_sealing(&s.db, &event.file_id).await?;
        keys::seal(&mut event, &key)?;
    }
    let (p, o) = s.producer.send(FILES, &event.file_id, &event).await?;
    Ok(consistency_token(FILES, p, o))
}

/// Keeps only the last path segment of a client-supplied name, without control characters.
pub fn clean_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).take(255).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "upload".into()
    } else {
        cleaned
    }
}

/// A direct upload was registered; its bytes are due before `upload_expires_at`.
pub async fn registered(
    s: &AppState,
    actor: String,
    file_id: &str,
    info: FileInfo,
    upload_expires_at: DateTime<Utc>,
) -> Result<String, ApiError> {
    let body = FileBody::Registered {
        info,
        upload_expires_at,
    };
    emit(s, actor, file_id, body).await
}

/// The file's bytes are stored under `info.storage_key`, their size and sha256 checked. The
/// upload's `claim` is confirmed once the broker has the event, released if it does not (so the
/// client's retry is not refused as a duplicate).
pub async fn uploaded(
    s: &AppState,
    claim: UploadClaim,
    actor: String,
    file_id: &str,
    info: FileInfo,
) -> Result<String, ApiError> {
    let size = info.size;
    match emit(s, actor, file_id, FileBody::Uploaded(info)).await {
        Ok(token) => {
            claim.confirm(s, &token).await;
            tracing::info!(%file_id, size, "file uploaded");
            Ok(token)
        }
        Err(e) => {
            claim.release(s).await;
            Err(e)
        }
    }
}

/// The reason of the `FileDeleted` the sweeper emits for a direct upload never completed.
pub const UPLOAD_EXPIRED: &str = "upload_expired";

/// A direct upload's link expired long ago without the upload completing: the file is deleted,
/// so it no longer counts as pending and its content may be registered again.
pub async fn upload_expired(s: &AppState, file_id: &str) -> Result<String, ApiError> {
    let body = FileBody::Deleted {
        reason: Some(UPLOAD_EXPIRED.into()),
    };
    emit(s, "system:sweeper".into(), file_id, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_lose_paths_and_control_characters() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\music\\song.mp3"), "song.mp3");
        assert_eq!(clean_filename("a\u{0}b\n.wav"), "ab.wav");
        assert_eq!(clean_filename(".."), "upload");
        assert_eq!(clean_filename(""), "upload");
    }
}
