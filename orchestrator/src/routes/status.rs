use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::Json;
use roar_projections::apply::{FileRow, JobRow};
use roar_schemas::FileStatus;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::ApiQuery;
use crate::middleware::User;
use crate::{notifier, ApiError, AppState};

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
        Some(f) if user.may_access(&f.owner) && f.status != FileStatus::Deleted => Ok(f),
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
        "file_id": j.file_id,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// A consistency token from a command response: wait (bounded) until it is projected.
    after: Option<String>,
    /// Show the file and its jobs as they were at this time (RFC 3339), from the history.
    as_of: Option<chrono::DateTime<chrono::Utc>>,
}

/// Parses `topic:partition:offset`; only roar's own topics are accepted.
pub(crate) fn parse_token(t: &str) -> Result<(String, i32, i64), ApiError> {
    let bad = || ApiError::BadRequest(format!("invalid consistency token {t:?}"));
    let mut it = t.rsplitn(3, ':');
    let offset: i64 = it.next().and_then(|o| o.parse().ok()).ok_or_else(bad)?;
    let partition: i32 = it.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let topic = it.next().ok_or_else(bad)?;
    let known = roar_schemas::topics::all(1).iter().any(|s| s.name == topic);
    if !known || offset < 0 || partition < 0 {
        return Err(bad());
    }
    Ok((topic.to_string(), partition, offset))
}

/// Waits until the projection has applied `token`, at most `http.consistency_wait_ms`.
async fn wait_applied(s: &AppState, token: &str) -> Result<bool, ApiError> {
    let (topic, partition, offset) = parse_token(token)?;
    let deadline = Instant::now() + Duration::from_millis(s.cfg.http.consistency_wait_ms);
    let mut rx = s.notifier.subscribe();
    loop {
        rx.borrow_and_update();
        if s.read.has_applied(&topic, partition, offset).await? {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        notifier::wait(&mut rx, left.min(Duration::from_millis(100))).await;
    }
}

/// `GET /status/{file_id}[?after=token]`: the file and every job on it, outputs with links.
#[utoipa::path(get, path = "/status/{file_id}", tag = "status",
    params(("file_id" = String, Path), ("after" = Option<String>, Query, description = "a consistency token: wait (bounded) until it is applied"),
        ("as_of" = Option<String>, Query, description = "RFC 3339 time: the file and its jobs as they were then (folded from the event history)")),
    responses(
        (status = 200, description = "the file and every job, outputs with download URLs", body = crate::openapi::StatusView),
        (status = 400, description = "invalid consistency token", body = crate::openapi::ErrorBody),
        (status = 404, description = "no such file of the caller's", body = crate::openapi::ErrorBody),
    ))]
pub async fn status(
    State(s): State<AppState>,
    user: User,
    Path(file_id): Path<String>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<Value>, ApiError> {
    let consistent = match &q.after {
        Some(t) => Some(wait_applied(&s, t).await?),
        None => None,
    };
    let f = visible_file(&s, &user, &file_id).await?;
    let (f, jobs) = match q.as_of {
        // Ownership is checked on the current row above; the past one only has to exist.
        Some(t) => match s.read.file_as_of(&f.file_id, t).await? {
            Some(past) => (past, s.read.jobs_as_of(&f.file_id, t).await?),
            None => return Err(ApiError::NotFound),
        },
        None => {
            let jobs = s.read.jobs_for_file(&f.file_id).await?;
            (f, jobs)
        }
    };
    let mut out = Vec::with_capacity(jobs.len());
    for j in &jobs {
        let mut v = job_json(j);
        v["outputs"] = crate::links::outputs_with_urls(&s, j).await;
        out.push(v);
    }
    let mut body = json!({ "file": file_json(&f), "jobs": out });
    if let Some(t) = q.as_of {
        body["as_of"] = json!(t);
    }
    if let Some(c) = consistent {
        // false: the wait ran out; what follows may not include the command yet.
        body["consistent"] = json!(c);
    }
    Ok(Json(body))
}
