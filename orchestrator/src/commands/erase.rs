//! Deleting a song for good (`DELETE /songs/{file_id}`), in this order:
//!
//! 1. `FileDeleted` (reason `erased`) is made, and the file's data key destroyed with the
//!    event's time as the erasure mark, before the event is sent: from then on nobody can read
//!    the name sealed in the file's events, the projector drops every event of the file up
//!    to the mark, and any later one, live and in a rebuild (`roar_projections::keys`), and
//!    the API requests no more work on the song ([`refuse_if_erased`]: 404);
//! 2. its work stops: one `CancelRequested` for the whole song on the control topic (an empty
//!    job id: every job of the file requested up to it), however many jobs it has. Workers
//!    stop its running jobs and cancel its queued ones when they reach them (`JobCanceled`
//!    each, after the answer); the pipeline manager requests no further step of the song and
//!    cancels the rest (`roar_projections::pipeline`);
//! 3. its objects are erased (upload, staging, outputs: stems, transcripts, manifests,
//!    metadata; the workers' handled-request markers), with the registration of a direct upload, its upload claim (the same content
//!    may be uploaded again), its quota admission and its rows in the tables the last rebuild
//!    retired;
//! 4. the event is sent, and the request answered (202): the projector removes the file's
//!    rows, its jobs with them, when it applies the event.
//!
//! Each step is idempotent, so a request that failed half-way is simply repeated (the song
//! stays visible until step 4). The request costs the same few events and statements for a
//! song with thousands of jobs as for one with none: cancelling job by job (two acknowledged
//! events each, and a pipeline's steps one after another) kept such a request waiting for
//! tens of seconds.
//!
//! A worker that was mid-write when its cancel arrived may still write an output after step 3:
//! the sweeper erases the objects of recently deleted files again ([`erase_objects`]).

use roar_projections::apply::FileRow;
use roar_projections::keys;
use roar_schemas::topics::CONTROL;
use roar_schemas::{ControlEvent, EventMeta, FileBody, FileEvent};

use super::actor;
use crate::middleware::{current_request_id, User};
use crate::{ApiError, AppState};

/// The reason of the `FileDeleted` a deletion by the owner or an admin emits.
pub const ERASED: &str = "erased";

/// The object folders that hold a file's content or anything derived from it, and the workers'
/// markers of its handled requests (`handled/{file_id}/`: ids only, but nothing of a deleted
/// song should outlive it). Erasing the markers keeps exactly-once: a request of the song that
/// comes back (a redelivery) is canceled by the song's cancel before the marker would be read.
fn folders(file_id: &str) -> [String; 4] {
    [
        format!("uploads/{file_id}/"),
        format!("staging/{file_id}/"),
        format!("outputs/{file_id}/"),
        format!("handled/{file_id}/"),
    ]
}

/// Most objects deleted per listing; a folder is listed again until it is empty.
const PAGE: usize = 500;

/// Deletes `file` (visible to `user`, the owner or an admin) as described above.
pub async fn erase(s: &AppState, user: &User, file: &FileRow) -> Result<(), ApiError> {
    let file_id = &file.file_id;
    let meta = EventMeta::new(current_request_id(), actor(user));
    let event = FileEvent {
        meta: meta.clone(),
        file_id: file_id.clone(),
        body: FileBody::Deleted {
            reason: Some(ERASED.into()),
        },
        sealed: None,
    };
    // Recorded first (read-your-writes, like the upload claims): from here on no instance
    // accepts new work on the song ([`refuse_if_erased`]), although the read model shows it
    // until the projector applies the `FileDeleted`.
    keys::erase(&s.db, file_id, event.meta.occurred_at).await?;
    // Timed after the record, so it covers every job requested before it: a request that
    // passed the check above was stamped before the record existed.
    let cancel = ControlEvent::song_cancel(
        meta.follow(actor(user)),
        file_id,
        format!("song deleted by {}", actor(user)),
    );
    s.producer.send(CONTROL, file_id, &cancel).await?;
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
    // This instance's memory of its requests not projected yet: the same job asked for on the
    // song uploaded again must be requested anew, not answered from the erased life.
    let jobs: Vec<String> = sqlx::query_scalar("SELECT job_id FROM jobs WHERE file_id = $1")
        .bind(file_id)
        .fetch_all(&s.db)
        .await?;
    for job_id in &jobs {
        s.pending.release(job_id);
    }
    super::files::send(s, event).await?;
    tracing::info!(%file_id, jobs = jobs.len(), objects, "file deleted and its key destroyed; its jobs are canceled by one song-wide cancel");
    Ok(())
}

/// 404, as for a file that does not exist, when `file_id` was deleted and has not begun a new
/// life since. Called before any job or pipeline is requested, after the request's events were
/// stamped: a request that passes was stamped before the deletion's record, so the song-wide
/// cancel sent after that record covers it.
pub(crate) async fn refuse_if_erased(s: &AppState, file_id: &str) -> Result<(), ApiError> {
    if keys::is_erased(&s.db, file_id).await? {
        tracing::info!(%file_id, "work refused: the song was deleted");
        return Err(ApiError::NotFound);
    }
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
