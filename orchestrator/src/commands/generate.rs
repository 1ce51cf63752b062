//! The generate command: a song of the caller's made by a model, not uploaded. It emits
//! `FileGenerationRequested` (the song exists, `generating`) and the job's `JobRequested`
//! (through the job command, so asking twice names one job); the worker writes the content
//! and announces it with `FileUploaded`, after which the song is a file like any upload.

use roar_common::catalog::{Resolved, GENERATES_SONG};
use roar_projections::apply::FileRow;
use roar_schemas::ids::{canonical_json, generated_file_id};
use roar_schemas::topics::FILES;
use roar_schemas::{EventMeta, FileBody, FileEvent, FileStatus, Generation};
use serde_json::Value;

use super::jobs;
use crate::middleware::{current_request_id, User};
use crate::views::{song_filename, GenerateAccepted};
use crate::{ApiError, AppState};

fn extension(params: &Value) -> &'static str {
    match params.get("format").and_then(Value::as_str) {
        Some("flac") => "flac",
        Some("mp3") => "mp3",
        _ => "wav",
    }
}

/// A file row standing for a song the read model does not show yet (only its id and owner
/// are read by the job command).
fn unprojected(file_id: &str, owner: &str, filename: &str) -> FileRow {
    let now = chrono::Utc::now();
    FileRow {
        file_id: file_id.to_string(),
        owner: owner.to_string(),
        filename: filename.to_string(),
        mime: String::new(),
        size: 0,
        sha256: String::new(),
        storage_key: String::new(),
        status: FileStatus::Generating,
        error_code: None,
        error_message: None,
        probe: None,
        request_ids: Vec::new(),
        created_at: now,
        updated_at: now,
        generation: None,
    }
}

/// A song whose queued job was canceled fails at once (no worker may ever see the request).
pub async fn canceled(
    s: &AppState,
    user: &User,
    job: &roar_projections::apply::JobRow,
    reason: &str,
) -> Result<(), ApiError> {
    let event = FileEvent {
        sealed: None,
        meta: EventMeta::new(current_request_id(), format!("user:{}", user.id())),
        file_id: job.file_id.clone(),
        body: FileBody::GenerationFailed {
            job_id: job.job_id.clone(),
            code: "generation_canceled".into(),
            message: reason.to_string(),
        },
    };
    s.producer.send(FILES, &job.file_id, &event).await?;
    Ok(())
}

/// Requests the song `r` describes (a validated musicgen request); whether anything was
/// emitted, and the answer.
pub async fn song(
    s: &AppState,
    user: &User,
    r: &Resolved,
) -> Result<(bool, GenerateAccepted), ApiError> {
    let mut r = r.clone();
    if let Value::Object(m) = &mut r.params {
        m.insert(GENERATES_SONG.into(), Value::Bool(true));
    }
    let owner = user.id();
    let file_id = generated_file_id(
        owner,
        r.model,
        &r.variation,
        &canonical_json(&r.params),
        &r.model_version,
    );
    let prompt = r.params["prompt"].as_str().unwrap_or_default().to_string();
    let filename = song_filename(&prompt, extension(&r.params));
    let existing = s.read.file(&file_id).await?;
    // A new song, or one whose generation ended without it: (re)announce it. A song being
    // generated or written already is only looked up.
    let announce = match &existing {
        None => true,
        Some(f) if f.status == FileStatus::Deleted => {
            return Err(ApiError::Conflict {
                code: "file_deleted",
                message: format!("song {file_id} was deleted"),
            })
        }
        // Deleted a moment ago (the read model shows it until the deletion is projected).
        Some(_) if roar_projections::keys::is_erased(&s.db, &file_id).await? => {
            return Err(ApiError::Conflict {
                code: "file_deleted",
                message: format!("song {file_id} was deleted"),
            })
        }
        Some(f) => f.status == FileStatus::Failed,
    };
    let job_id = jobs::identity_reading(&file_id, &r, None)
        .job_id()
        .to_string();
    let mut token = None;
    if announce {
        let event = FileEvent {
            sealed: None,
            meta: EventMeta::new(current_request_id(), format!("user:{owner}")),
            file_id: file_id.clone(),
            body: FileBody::GenerationRequested(Generation {
                owner: owner.to_string(),
                filename: filename.clone(),
                prompt,
                job_id: job_id.clone(),
                model: r.model.to_string(),
                variation: r.variation.clone(),
                duration_seconds: r.params["duration"].as_f64().unwrap_or_default(),
            }),
        };
        token = Some(super::files::send(s, event).await?);
        tracing::info!(%file_id, %job_id, "song generation requested");
    }
    let file = existing.unwrap_or_else(|| unprojected(&file_id, owner, &filename));
    let job = jobs::request(s, user, &file, &r, None).await?;
    let filename = if file.filename.is_empty() {
        filename
    } else {
        file.filename.clone()
    };
    Ok((
        announce || job.emitted,
        GenerateAccepted {
            file_id,
            filename,
            consistency_token: token,
            job: job.view,
        },
    ))
}
