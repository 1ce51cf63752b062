//! Deleting a song for good (`DELETE /songs/{file_id}`), in this order:
//!
//! 1. its work stops: unfinished pipelines and jobs are canceled (a queued job at once, a
//!    running one by its worker);
//! 2. `FileDeleted` (reason `erased`) is made, and the file's data key destroyed with the
//!    event's time as the erasure mark, before the event is sent: from then on nobody can read
//!    the name sealed in the file's events, and the projector drops every event of the file up
//!    to the mark, live and in a rebuild (`roar_projections::keys`);
//! 3. its objects are erased (upload, staging, outputs: stems, transcripts, manifests,
//!    metadata), with the registration of a direct upload, its upload claim (the same content
//!    may be uploaded again), its quota admission and its rows in the tables the last rebuild
//!    retired;
//! 4. the event is sent; the projector removes the file's rows when it applies it.
//!
//! A worker that was mid-write when its cancel arrived may still write an output after step 3:
//! the sweeper erases the objects of recently deleted files again ([`erase_objects`]).

use futures::stream::{self, StreamExt};
use roar_projections::apply::FileRow;
use roar_projections::keys;
use roar_schemas::{EventMeta, FileBody, FileEvent};

use super::actor;
use crate::middleware::{current_request_id, User};
use crate::{ApiError, AppState};

/// The reason of the `FileDeleted` a deletion by the owner or an admin emits.
pub const ERASED: &str = "erased";

/// The object folders that hold a file's content or anything derived from it. (`handled/`
/// markers name only ids: they stay, so a redelivered request of a deleted file's job is still
/// recognised as done.)
fn folders(file_id: &str) -> [String; 3] {
    [
        format!("uploads/{file_id}/"),
        format!("staging/{file_id}/"),
        format!("outputs/{file_id}/"),
    ]
}

/// Jobs canceled concurrently while a song is deleted.
const CANCELS_AT_ONCE: usize = 32;

/// Most objects deleted per listing; a folder is listed again until it is empty.
const PAGE: usize = 500;

/// Deletes `file` (visible to `user`, the owner or an admin) as described above.
pub async fn erase(s: &AppState, user: &User, file: &FileRow) -> Result<(), ApiError> {
    let file_id = &file.file_id;
    for p in s.read.pipelines_for_file(file_id).await? {
        if p.canceled_at.is_none() {
            match super::pipelines::cancel(s, user, &p).await {
                Ok(_) | Err(ApiError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    // Each cancel waits for the broker's acknowledgements: a song with many unfinished jobs
    // would keep the caller waiting for them one by one.
    let open: Vec<_> = s
        .read
        .jobs_for_file(file_id)
        .await?
        .into_iter()
        .filter(|job| !job.status.is_terminal())
        .collect();
    let outcomes: Vec<_> = stream::iter(open)
        .map(|job| async move { super::cancel::cancel(s, user, &job).await })
        .buffer_unordered(CANCELS_AT_ONCE)
        .collect()
        .await;
    let mut canceled = 0;
    for outcome in outcomes {
        match outcome {
            Ok(_) => canceled += 1,
            Err(ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let event = FileEvent {
        meta: EventMeta::new(current_request_id(), actor(user)),
        file_id: file_id.clone(),
        body: FileBody::Deleted {
            reason: Some(ERASED.into()),
        },
        sealed: None,
    };
    keys::erase(&s.db, file_id, event.meta.occurred_at).await?;
    let objects = erase_objects(s, file_id).await?;
    roar_projections::purge_retired(&s.db, file_id).await?;
    // The same content may be uploaded again (the same id, a new key and a new life).
    for table in ["upload_registrations", "upload_claims"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE file_id = $1"))
            .bind(file_id)
            .execute(&s.db)
            .await?;
    }
    // Its bytes no longer count against the owner's storage (jobs requested today still count).
    sqlx::query(
        "DELETE FROM quota_admissions WHERE ref_id = $1 AND kind IN ('upload', 'registration')",
    )
    .bind(file_id)
    .execute(&s.db)
    .await?;
    super::files::send(s, event).await?;
    tracing::info!(%file_id, jobs_canceled = canceled, objects, "file deleted and its key destroyed");
    Ok(())
}

/// Deletes every object of the file; how many there were.
pub(crate) async fn erase_objects(s: &AppState, file_id: &str) -> Result<usize, ApiError> {
    let mut n = 0;
    for folder in folders(file_id) {
        loop {
            let keys = s
                .storage
                .list_older(&folder, chrono::DateTime::<chrono::Utc>::MAX_UTC, PAGE)
                .await
                .map_err(ApiError::internal)?;
            if keys.is_empty() {
                break;
            }
            for key in &keys {
                s.storage.delete(key).await.map_err(ApiError::internal)?;
            }
            n += keys.len();
            if keys.len() < PAGE {
                break;
            }
        }
    }
    Ok(n)
}
