use axum::extract::{Path, State};
use axum::Json;
use roar_projections::apply::{FileRow, JobRow};
use serde_json::{json, Value};

use crate::middleware::User;
use crate::{ApiError, AppState};

/// A file the caller may see, or 404 (also for other users' files: no existence oracle).
pub(crate) async fn visible_file(
    s: &AppState,
    user: &User,
    file_id: &str,
) -> Result<FileRow, ApiError> {
    if !roar_schemas::ids::is_valid_id('f', file_id) {
        return Err(ApiError::NotFound);
    }
    match s.read.file(file_id).await? {
        Some(f) if user.may_access(&f.owner) && f.status != "deleted" => Ok(f),
        _ => Err(ApiError::NotFound),
    }
}

pub(crate) fn file_json(f: &FileRow) -> Value {
    json!({
        "file_id": f.file_id,
        "filename": f.filename,
        "mime": f.mime,
        "size": f.size,
        "sha256": f.sha256,
        "status": f.status,
        "error": f.error_code.as_ref().map(|c| json!({ "code": c, "message": f.error_message })),
        "metadata": f.probe,
        "created_at": f.created_at,
        "updated_at": f.updated_at,
    })
}

pub(crate) fn job_json(j: &JobRow) -> Value {
    json!({
        "job_id": j.job_id,
        "model": j.model,
        "variation": j.variation,
        "model_version": j.model_version,
        "params": j.params,
        "status": j.status,
        "skipped": j.skipped,
        "progress": j.progress,
        "message": j.message,
        "attempt": j.attempt,
        "error": j.error_code.as_ref().map(|c| json!({ "code": c, "message": j.error_message, "retryable": j.retryable })),
        "outputs": j.outputs,
        "created_at": j.created_at,
        "started_at": j.started_at,
        "finished_at": j.finished_at,
        "updated_at": j.updated_at,
    })
}

/// `GET /status/{file_id}`: the file and every job on it.
pub async fn status(
    State(s): State<AppState>,
    user: User,
    Path(file_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let f = visible_file(&s, &user, &file_id).await?;
    let jobs = s.read.jobs_for_file(&f.file_id).await?;
    Ok(Json(
        json!({ "file": file_json(&f), "jobs": jobs.iter().map(job_json).collect::<Vec<_>>() }),
    ))
}
