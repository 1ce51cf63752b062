//! Cancel: `CancelRequested` on the control topic asks every worker to stop the job; a job no
//! worker has started also gets `JobCanceled` at once.

use roar_common::catalog::GENERATES_SONG;
use roar_projections::apply::JobRow;
use roar_schemas::topics::{CONTROL, JOB_EVENTS};
use roar_schemas::{ControlBody, ControlEvent, EventMeta, JobBody, JobEvent, JobStatus};

use super::{actor, consistency_token};
use crate::middleware::{current_request_id, User};
use crate::views::{CancelAccepted, CommandStatus, Outcome};
use crate::{ApiError, AppState};

/// Asks every worker to stop the job; a job no worker has started is canceled at once.
pub async fn cancel(s: &AppState, user: &User, job: &JobRow) -> Result<CancelAccepted, ApiError> {
    if job.status.is_terminal() {
        return Err(ApiError::Conflict {
            code: "job_finished",
            message: format!("job is already {}", job.status),
        });
    }
    let meta = EventMeta::new(current_request_id(), actor(user));
    let reason = format!("canceled by {}", actor(user));
    let control = ControlEvent {
        meta: meta.clone(),
        job_id: job.job_id.clone(),
        body: ControlBody::CancelRequested {
            file_id: job.file_id.clone(),
            reason: reason.clone(),
        },
    };
    let (p, o) = s.producer.send(CONTROL, &job.job_id, &control).await?;
    let mut token = consistency_token(CONTROL, p, o);
    let canceled = job.status == JobStatus::Queued;
    if canceled {
        let ev = JobEvent {
            meta: meta.follow(actor(user)),
            job_id: job.job_id.clone(),
            file_id: job.file_id.clone(),
            model: job.model.clone(),
            variation: job.variation.clone(),
            body: JobBody::Canceled {
                reason: reason.clone(),
            },
        };
        let (p, o) = s.producer.send(JOB_EVENTS, &job.file_id, &ev).await?;
        token = consistency_token(JOB_EVENTS, p, o);
        s.pending.release(&job.job_id);
        if job.params.get(GENERATES_SONG) == Some(&serde_json::Value::Bool(true)) {
            super::generate::canceled(s, user, job, &reason).await?;
        }
    }
    let status = if canceled {
        Outcome::Job(JobStatus::Canceled)
    } else {
        Outcome::Command(CommandStatus::CancelRequested)
    };
    tracing::info!(job_id = %job.job_id, canceled, "job cancel requested");
    Ok(CancelAccepted {
        job_id: job.job_id.clone(),
        file_id: job.file_id.clone(),
        status,
        consistency_token: token,
    })
}
