//! `JobRequested`: a job's first request (idempotent by job id) and its retries. The read model
//! tells what already exists, and a short in-process memory of requests that the projection has
//! not applied yet keeps a quick double-click from emitting twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roar_common::catalog::Resolved;
use roar_projections::apply::{FileRow, JobRow};
use roar_schemas::ids::{canonical_json, JobIdentity};
use roar_schemas::topics::jobs_topic;
use roar_schemas::{EventMeta, JobInput, JobRequested, JobStatus};

use super::{actor, consistency_token};
use crate::middleware::{current_request_id, User};
use crate::views::{CommandStatus, JobInputView, JobRequestView, Outcome, RetryAccepted};
use crate::{ApiError, AppState};

/// How long a request the projection has not shown yet is remembered.
const PENDING_TTL: Duration = Duration::from_secs(60);
/// Most remembered requests (bounded memory).
const PENDING_MAX: usize = 10_000;

/// job_id → (attempt, consistency token, when sent).
type Pending = HashMap<String, (i32, String, Instant)>;

/// Job requests sent but maybe not yet projected.
#[derive(Default, Clone)]
pub struct PendingRequests(Arc<Mutex<Pending>>);

impl PendingRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `attempt` of `job_id` unless an equal or later attempt is already pending;
    /// returns the pending one's token then.
    pub(crate) fn reserve(&self, job_id: &str, attempt: i32) -> Result<(), (i32, String)> {
        let mut m = self.lock();
        let now = Instant::now();
        if m.len() >= PENDING_MAX {
            m.retain(|_, (_, _, at)| now.duration_since(*at) < PENDING_TTL);
        }
        if let Some((a, token, at)) = m.get(job_id) {
            if *a >= attempt && now.duration_since(*at) < PENDING_TTL {
                return Err((*a, token.clone()));
            }
        }
        if m.len() < PENDING_MAX {
            m.insert(job_id.to_string(), (attempt, String::new(), now));
        }
        Ok(())
    }

    pub(crate) fn confirm(&self, job_id: &str, token: &str) {
        if let Some(e) = self.lock().get_mut(job_id) {
            e.1 = token.to_string();
        }
    }

    pub(crate) fn release(&self, job_id: &str) {
        self.lock().remove(job_id);
    }
}

/// The identity of `r` (a validated catalogue request, recorded as `r.model_version`) on
/// `file_id`, reading `input` (`None`: the upload): the one place a request becomes a job id,
/// for `/process`, `/generate`, a pipeline's first step and replays alike. (A pipeline's
/// steps get theirs from `ids::step_identity`, which the process manager shares; both build
/// on `JobIdentity::new`.)
pub(crate) fn identity_reading(
    file_id: &str,
    r: &Resolved,
    input: Option<JobInput>,
) -> JobIdentity {
    let id = JobIdentity::new(file_id, r.model, &r.variation, &r.params, &r.model_version);
    match input {
        Some(i) => id.reading(i),
        None => id,
    }
}

/// What a job request turned into.
pub struct Requested {
    pub view: JobRequestView,
    /// Whether a new event was emitted.
    pub emitted: bool,
}

/// `POST /process` for one validated model request on a ready file, reading the upload or
/// (`input`) one output of a completed job.
pub async fn request(
    s: &AppState,
    user: &User,
    file: &FileRow,
    r: &Resolved,
    input: Option<JobInput>,
) -> Result<Requested, ApiError> {
    let identity = identity_reading(&file.file_id, r, input);
    let job_id = identity.job_id().to_string();
    let input_view = identity.input().map(JobInputView::from);
    let view = |status: Outcome| JobRequestView {
        job_id: job_id.clone(),
        file_id: file.file_id.clone(),
        model: r.model.to_string(),
        variation: r.variation.clone(),
        model_version: r.model_version.clone(),
        params: r.params.clone(),
        status,
        attempt: None,
        outputs: None,
        consistency_token: None,
        input: input_view.clone(),
        pipeline_id: None,
    };
    let existing = s.read.job(&job_id).await?;
    let attempt = match &existing {
        Some(j) if j.status == JobStatus::Completed => {
            let outputs = crate::links::outputs_with_urls(s, j).await;
            return Ok(Requested {
                view: JobRequestView {
                    outputs: Some(outputs),
                    ..view(Outcome::Command(CommandStatus::Skipped))
                },
                emitted: false,
            });
        }
        Some(j) if !j.status.is_terminal() => {
            return Ok(Requested {
                view: JobRequestView {
                    attempt: Some(j.attempt),
                    ..view(Outcome::Job(j.status))
                },
                emitted: false,
            });
        }
        Some(j) => j.attempt.max(1) + 1,
        None => 1,
    };
    let spec = identity.request(
        EventMeta::new(current_request_id(), actor(user)),
        file.owner.clone(),
        attempt,
    );
    let (emitted, attempt, token) = emit_request(s, spec).await?;
    Ok(Requested {
        view: JobRequestView {
            attempt: Some(attempt),
            consistency_token: Some(token),
            ..view(Outcome::Job(JobStatus::Queued))
        },
        emitted,
    })
}

/// Sends a JobRequested unless the same or a later attempt is pending already.
async fn emit_request(s: &AppState, mut ev: JobRequested) -> Result<(bool, i32, String), ApiError> {
    // A song deleted a moment ago is still in the read model: its deletion's record says no.
    super::erase::refuse_if_erased(s, &ev.file_id).await?;
    if let Err((attempt, token)) = s.pending.reserve(&ev.job_id, ev.attempt) {
        return Ok((false, attempt, token));
    }
    if let Err(e) = super::prompts::put_aside(&s.db, &s.storage, &mut ev).await {
        s.pending.release(&ev.job_id);
        return Err(e.into());
    }
    // The owner's quota counts the request from here on (429 when it is full).
    let admission = match crate::quotas::admit(
        s,
        &ev.owner,
        crate::quotas::Kind::Job,
        &ev.job_id,
        0,
        ev.meta.occurred_at,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            s.pending.release(&ev.job_id);
            return Err(e);
        }
    };
    let topic = jobs_topic(&ev.model);
    match s.producer.send(&topic, &ev.file_id, &ev).await {
        Ok((p, o)) => {
            let token = consistency_token(&topic, p, o);
            s.pending.confirm(&ev.job_id, &token);
            tracing::info!(job_id = %ev.job_id, file_id = %ev.file_id, model = %ev.model, attempt = ev.attempt, "job requested");
            Ok((true, ev.attempt, token))
        }
        Err(e) => {
            admission.release(s).await;
            s.pending.release(&ev.job_id);
            Err(e.into())
        }
    }
}

/// Requests another attempt of a failed or canceled job.
pub async fn retry(s: &AppState, user: &User, job: &JobRow) -> Result<RetryAccepted, ApiError> {
    if !job.status.is_closed() {
        return Err(ApiError::Conflict {
            code: "job_not_retryable",
            message: format!(
                "job is {}; only failed or canceled jobs can be retried",
                job.status
            ),
        });
    }
    let ev = JobRequested {
        meta: EventMeta::new(current_request_id(), actor(user)),
        job_id: job.job_id.clone(),
        file_id: job.file_id.clone(),
        owner: job.owner.clone(),
        model: job.model.clone(),
        variation: job.variation.clone(),
        model_version: job.model_version.clone(),
        params_json: canonical_json(&job.params),
        attempt: job.attempt.max(1) + 1,
        not_before: None,
        // The job id covers its input: another attempt reads what the first one read.
        input: job.input(),
    };
    let (_, attempt, token) = emit_request(s, ev).await?;
    Ok(RetryAccepted {
        job_id: job.job_id.clone(),
        file_id: job.file_id.clone(),
        status: JobStatus::Queued,
        attempt,
        consistency_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_request_blocks_the_same_attempt_but_not_a_later_one() {
        let p = PendingRequests::default();
        assert!(p.reserve("j1", 1).is_ok());
        p.confirm("j1", "t:0:1");
        assert_eq!(p.reserve("j1", 1), Err((1, "t:0:1".to_string())));
        assert!(p.reserve("j1", 2).is_ok());
        p.release("j1");
        assert!(p.reserve("j1", 1).is_ok());
    }
}
