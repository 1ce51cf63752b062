//! Job commands and the admin view. Admins (role `admin`) act on every job; an owner may
//! cancel their own.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::commands;
use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::User;
use crate::routes::cursor;
use crate::routes::status::visible_job;
use crate::views::{
    AdminJobView, AuthErrors, CancelAccepted, ErrorBody, JobPath, JobView, JobsPage, JobsQuery,
    RetryAccepted,
};
use crate::{ApiError, AppState};

pub(crate) fn require_admin(user: &User) -> Result<(), ApiError> {
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
    params(JobPath),
    responses(
        (status = 202, description = "a new attempt was requested", body = RetryAccepted),
        (status = 403, description = "needs the admin role", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "only failed or canceled jobs can be retried (`job_not_retryable`)", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn retry(
    State(s): State<AppState>,
    user: User,
    ApiPath(JobPath { job_id }): ApiPath<JobPath>,
) -> Result<(StatusCode, Json<RetryAccepted>), ApiError> {
    require_admin(&user)?;
    let job = visible_job(&s, &user, &job_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(commands::jobs::retry(&s, &user, &job).await?),
    ))
}

/// `POST /admin/jobs/{job_id}/cancel`.
#[utoipa::path(post, path = "/admin/jobs/{job_id}/cancel", tag = "admin",
    params(JobPath),
    responses(
        (status = 202, description = "`canceled` (it was queued) or `cancel_requested` (a worker stops it)", body = CancelAccepted),
        (status = 403, description = "needs the admin role", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job has finished (`job_finished`)", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn admin_cancel(
    State(s): State<AppState>,
    user: User,
    ApiPath(JobPath { job_id }): ApiPath<JobPath>,
) -> Result<(StatusCode, Json<CancelAccepted>), ApiError> {
    require_admin(&user)?;
    let job = visible_job(&s, &user, &job_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(commands::cancel::cancel(&s, &user, &job).await?),
    ))
}

/// `POST /jobs/{job_id}/cancel`: the owner (or an admin) cancels a job.
#[utoipa::path(post, path = "/jobs/{job_id}/cancel", tag = "jobs",
    params(JobPath),
    responses(
        (status = 202, description = "`canceled` (it was queued) or `cancel_requested` (a worker stops it)", body = CancelAccepted),
        (status = 404, description = "no such job of the caller's", body = ErrorBody),
        (status = 409, description = "the job has finished (`job_finished`)", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn cancel(
    State(s): State<AppState>,
    user: User,
    ApiPath(JobPath { job_id }): ApiPath<JobPath>,
) -> Result<(StatusCode, Json<CancelAccepted>), ApiError> {
    let job = visible_job(&s, &user, &job_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(commands::cancel::cancel(&s, &user, &job).await?),
    ))
}

/// `GET /admin/jobs?status=&limit=&cursor=`: every user's jobs, most recently changed first.
#[utoipa::path(get, path = "/admin/jobs", tag = "admin",
    params(JobsQuery),
    responses(
        (status = 200, description = "a page of jobs, most recently changed first", body = JobsPage),
        (status = 400, description = "an unknown query parameter or status, a limit outside 1..=200, or an invalid cursor", body = ErrorBody),
        (status = 403, description = "needs the admin role", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn list(
    State(s): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> Result<Json<JobsPage>, ApiError> {
    require_admin(&user)?;
    let status = q.status;
    let limit = cursor::limit(q.limit)?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| cursor::decode(c, 'j'))
        .transpose()?;
    let rows = s.read.jobs_page(status, limit + 1, before).await?;
    let more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    let next = more
        .then(|| page.last().map(|j| cursor::encode(j.updated_at, &j.job_id)))
        .flatten();
    // A queued job no live worker serves says why it waits, as on /status (once the control
    // topic has been read: before that, every worker would look absent).
    let live = s
        .control
        .caught_up()
        .then(|| s.control.live_workers(chrono::Utc::now()));
    Ok(Json(JobsPage {
        jobs: page
            .iter()
            .map(|j| {
                let mut job = JobView::new(j, crate::views::stored_outputs(j));
                if let Some(live) = &live {
                    job.explain_wait(live);
                }
                AdminJobView {
                    job,
                    owner: j.owner.clone(),
                }
            })
            .collect(),
        next_cursor: next,
    }))
}
