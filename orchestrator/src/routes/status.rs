use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use roar_common::metrics::STATUS_CACHE;
use roar_projections::apply::{FileRow, JobRow};
use roar_schemas::FileStatus;

use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::User;
use crate::views::{AuthErrors, ErrorBody, FilePath, FileView, JobView, StatusQuery, StatusView};
use crate::{links, notifier, ApiError, AppState};

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

/// A job the caller may see, or 404 (other users' jobs included).
pub(crate) async fn visible_job(
    s: &AppState,
    user: &User,
    job_id: &str,
) -> Result<JobRow, ApiError> {
    if !roar_schemas::ids::is_valid_id('j', job_id) {
        return Err(ApiError::NotFound);
    }
    let job = s.read.job(job_id).await?.ok_or(ApiError::NotFound)?;
    if user.may_access(&job.owner) {
        return Ok(job);
    }
    // Rows made from job events alone may lack the owner: the file knows it.
    if job.owner.is_empty() {
        if let Some(f) = s.read.file(&job.file_id).await? {
            if user.may_access(&f.owner) {
                return Ok(job);
            }
        }
    }
    Err(ApiError::NotFound)
}

/// Parses `topic:partition:offset` (decimal digits only); only roar's own topics are accepted.
pub(crate) fn parse_token(t: &str) -> Result<(String, i32, i64), ApiError> {
    let bad = || ApiError::BadRequest(format!("invalid consistency token {t:?}"));
    fn digits(s: &str, most: usize) -> Option<&str> {
        (!s.is_empty() && s.len() <= most && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
    }
    let mut it = t.rsplitn(3, ':');
    let offset: i64 = it
        .next()
        .and_then(|o| digits(o, 18))
        .and_then(|o| o.parse().ok())
        .ok_or_else(bad)?;
    let partition: i32 = it
        .next()
        .and_then(|p| digits(p, 9))
        .and_then(|p| p.parse().ok())
        .ok_or_else(bad)?;
    let topic = it.next().ok_or_else(bad)?;
    if !roar_schemas::topics::all(1).iter().any(|s| s.name == topic) {
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

/// Bounds an `as_of` read: not in the future (there is no history there yet), and no more
/// events to fold than `http.as_of_max_events` (each is decoded and applied per request).
async fn check_as_of(s: &AppState, file_id: &str, t: DateTime<Utc>) -> Result<(), ApiError> {
    // A little clock skew between client and server is not the client's mistake.
    if t > Utc::now() + chrono::Duration::seconds(60) {
        return Err(ApiError::BadRequest("as_of is in the future".into()));
    }
    let max = s.cfg.http.as_of_max_events;
    if s.read.history_len_until(file_id, t).await? > max {
        return Err(ApiError::Unprocessable(format!(
            "the file's history up to as_of has more than {max} events; pick an earlier time"
        )));
    }
    Ok(())
}

/// `GET /status/{file_id}[?after=token][&as_of=time]`: the file and every job on it, outputs
/// with links.
// A plain read is answered from `crate::status_cache` while the projection has not changed
// since the body was rendered (not in the doc comment: that one is the OpenAPI summary).
#[utoipa::path(get, path = "/status/{file_id}", tag = "status",
    params(FilePath, StatusQuery),
    responses(
        (status = 200, description = "the file and every job, outputs with download URLs", body = StatusView),
        (status = 400, description = "an unknown query parameter, a consistency token of another form, or a time that is not RFC 3339 or is in the future", body = ErrorBody),
        (status = 404, description = "no such file of the caller's, or it did not exist at `as_of`", body = ErrorBody),
        (status = 422, description = "the history up to `as_of` is longer than `http.as_of_max_events`", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn status(
    State(s): State<AppState>,
    user: User,
    ApiPath(FilePath { file_id }): ApiPath<FilePath>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Response, ApiError> {
    // `?after=` (read-your-writes) and `as_of` always read; a plain read may be cached.
    if q.after.is_some() || q.as_of.is_some() {
        let (_, view) = render(&s, &user, &file_id, &q).await?;
        return Ok(Json(view).into_response());
    }
    if !roar_schemas::ids::is_valid_id('f', &file_id) {
        return Err(ApiError::NotFound);
    }
    if let Some(hit) = s.status_cache.get(&s.notifier, &file_id) {
        metrics::counter!(STATUS_CACHE, "result" => "hit").increment(1);
        // The same answer as `visible_file` gives on a miss: another user's file is not there.
        if !user.may_access(&hit.owner) {
            return Err(ApiError::NotFound);
        }
        return Ok(json_body(hit.body));
    }
    // Taken before the reads: a commit seen during them keeps their body out of the cache.
    let generation = s.status_cache.generation(&s.notifier);
    let (owner, view) = render(&s, &user, &file_id, &q).await?;
    let body = Bytes::from(serde_json::to_vec(&view).map_err(ApiError::internal)?);
    if let Some(g) = generation {
        metrics::counter!(STATUS_CACHE, "result" => "miss").increment(1);
        s.status_cache
            .put(&s.notifier, g, &file_id, &owner, body.clone());
    }
    Ok(json_body(body))
}

fn json_body(body: Bytes) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The file and its jobs as `q` asks for them, and the file's owner.
async fn render(
    s: &AppState,
    user: &User,
    file_id: &str,
    q: &StatusQuery,
) -> Result<(String, StatusView), ApiError> {
    let consistent = match &q.after {
        Some(t) => Some(wait_applied(s, t).await?),
        None => None,
    };
    let f = visible_file(s, user, file_id).await?;
    let owner = f.owner.clone();
    if let Some(t) = q.as_of {
        check_as_of(s, &f.file_id, t).await?;
    }
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
    let pipelines =
        crate::commands::pipelines::views_for_file(s, &f.file_id, &jobs, q.as_of).await?;
    let mut views = Vec::with_capacity(jobs.len());
    // Only today's workers tell why a job waits now, not at `as_of`.
    let live = (q.as_of.is_none() && s.control.caught_up())
        .then(|| s.control.live_workers(chrono::Utc::now()));
    for j in &jobs {
        let mut view = JobView::new(j, links::outputs_with_urls(s, j).await);
        if let Some(live) = &live {
            view.explain_wait(live);
        }
        views.push(view);
    }
    let view = StatusView {
        file: FileView::from(&f),
        jobs: views,
        pipelines,
        as_of: q.as_of,
        // false: the wait ran out; what follows may not include the command yet.
        consistent,
    };
    Ok((owner, view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_token_form_is_what_parse_token_accepts() {
        let pattern = crate::views::schema::pattern_of(&crate::views::schema::consistency_token());
        for t in [
            "roar.files.v1:0:0",
            "roar.job-events.v1:3:123456789012345678",
            "roar.jobs.pitch.v1:123456789:1",
            "roar.files.v1:1234567890:1",
            "roar.files.v1:1:1234567890123456789",
            "roar.files.v1:+1:1",
            "roar.files.v1:1:-1",
            "roar.files.v1::1",
            "roar.files.v1:1",
            "roarXfiles.v1:1:1",
            "other.topic:0:1",
            "../../x",
            "",
        ] {
            assert_eq!(pattern.is_match(t), parse_token(t).is_ok(), "{t}");
        }
    }
}
