//! Job commands and the admin view. Admins (role `admin`) act on every job; an owner may
//! cancel their own.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use roar_schemas::JobStatus;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::ApiQuery;
use crate::jobs::{self, visible_job};
use crate::middleware::User;
use crate::routes::cursor;
use crate::routes::status::job_json;
use crate::{ApiError, AppState};

fn require_admin(user: &User) -> Result<(), ApiError> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this endpoint needs the admin role".into(),
        ))
    }
}

/// `POST /admin/jobs/{job_id}/retry`.
#[utoipa::path(post, path = "/admin/jobs/{job_id}/retry", tag = "admin",
    params(("job_id" = String, Path)),
    responses(
        (status = 202, description = "a new attempt was requested", body = crate::openapi::JobView),
        (status = 403, description = "needs the admin role", body = crate::openapi::ErrorBody),
        (status = 404, description = "no such job", body = crate::openapi::ErrorBody),
        (status = 409, description = "only failed or canceled jobs can be retried", body = crate::openapi::ErrorBody),
    ))]
pub async fn retry(
    State(s): State<AppState>,
    user: User,
    Path(job_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_admin(&user)?;
    let job = visible_job(&s, &user, &job_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(jobs::retry(&s, &user, &job).await?),
    ))
}

/// `POST /admin/jobs/{job_id}/cancel`.
#[utoipa::path(post, path = "/admin/jobs/{job_id}/cancel", tag = "admin",
    params(("job_id" = String, Path)),
    responses(
        (status = 202, description = "`canceled` or `cancel_requested`"),
        (status = 403, description = "needs the admin role", body = crate::openapi::ErrorBody),
        (status = 404, description = "no such job", body = crate::openapi::ErrorBody),
        (status = 409, description = "the job has finished", body = crate::openapi::ErrorBody),
    ))]
pub async fn admin_cancel(
    State(s): State<AppState>,
    user: User,
    Path(job_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_admin(&user)?;
    let job = visible_job(&s, &user, &job_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(jobs::cancel(&s, &user, &job).await?),
    ))
}

/// `POST /jobs/{job_id}/cancel`: the owner (or an admin) cancels a job.
#[utoipa::path(post, path = "/jobs/{job_id}/cancel", tag = "jobs",
    params(("job_id" = String, Path)),
    responses(
        (status = 202, description = "`canceled` (it was queued) or `cancel_requested` (a worker stops it)"),
        (status = 404, description = "no such job of the caller's", body = crate::openapi::ErrorBody),
        (status = 409, description = "the job has finished (`job_finished`)", body = crate::openapi::ErrorBody),
    ))]
pub async fn cancel(
    State(s): State<AppState>,
    user: User,
    Path(job_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let job = visible_job(&s, &user, &job_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(jobs::cancel(&s, &user, &job).await?),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /admin/jobs?status=&limit=&cursor=`: every user's jobs, most recently changed first.
#[utoipa::path(get, path = "/admin/jobs", tag = "admin",
    params(("status" = Option<String>, Query, description = "queued | running | completed | failed | canceled"), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses(
        (status = 200, description = "{jobs: [JobView + owner], next_cursor}, most recently changed first"),
        (status = 400, description = "unknown status, invalid limit or cursor", body = crate::openapi::ErrorBody),
        (status = 403, description = "needs the admin role", body = crate::openapi::ErrorBody),
    ))]
pub async fn list(
    State(s): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&user)?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<JobStatus>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limit = cursor::limit(q.limit)?;
    let before = q.cursor.as_deref().map(cursor::decode).transpose()?;
    let rows = s.read.jobs_page(status, limit + 1, before).await?;
    let more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    let next = more
        .then(|| page.last().map(|j| cursor::encode(j.updated_at, &j.job_id)))
        .flatten();
    Ok(Json(json!({
        "jobs": page.iter().map(|j| { let mut v = job_json(j); v["owner"] = json!(j.owner); v }).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}
