//! `POST /notify`'s command: a report of an external worker (no Kafka access) becomes the same
//! job event an in-cluster worker would emit, on the job's own key.

use roar_schemas::topics::JOB_EVENTS;
use roar_schemas::{EventMeta, JobBody, JobEvent, Output};

use super::consistency_token;
use crate::middleware::{current_request_id, User};
use crate::views::schema::is_output_path;
use crate::views::{NotifyAccepted, NotifyRequest, NotifyStatus};
use crate::{ApiError, AppState};

/// The job event a report stands for. What can be checked without the job is checked here,
/// so a malformed report is 422 whether or not the job exists.
fn body_of(n: NotifyRequest) -> Result<JobBody, ApiError> {
    let bad = |m: &str| ApiError::Unprocessable(m.to_string());
    if n.progress.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
        return Err(bad("progress must be within 0..=100"));
    }
    // Whatever the status: a report the document calls malformed is refused, even where its
    // outputs would be dropped.
    if let Some(o) = n.outputs.iter().find(|o| !is_output_path(&o.path)) {
        return Err(bad(&format!(
            "output path {:?} must be a key under outputs/{{file_id}}/",
            o.path
        )));
    }
    Ok(match n.status {
        NotifyStatus::Started => JobBody::Started {
            worker: n.worker.unwrap_or_else(|| "external".into()),
            attempt: n.attempt.unwrap_or(1),
        },
        NotifyStatus::Progress => JobBody::Progress {
            percent: n
                .progress
                .ok_or_else(|| bad("progress needs `progress` (0..=100)"))?,
            message: n.message.unwrap_or_default(),
        },
        NotifyStatus::Completed => JobBody::Completed {
            outputs: n
                .outputs
                .into_iter()
                .map(|o| Output {
                    path: o.path,
                    kind: o.kind,
                    content_type: o.content_type,
                    size: o.size,
                    sha256: o.sha256,
                })
                .collect(),
            duration_seconds: n.duration_seconds.unwrap_or(0.0),
        },
        NotifyStatus::Failed => {
            let e = n
                .error
                .ok_or_else(|| bad("failed needs `error` {code, message}"))?;
            JobBody::Failed {
                code: e.code,
                message: e.message,
                retryable: e.retryable,
            }
        }
        NotifyStatus::Canceled => JobBody::Canceled {
            reason: n.message.unwrap_or_else(|| "canceled by worker".into()),
        },
    })
}

/// A completed job's outputs are its file's (409 otherwise; their form is checked in
/// [`body_of`]).
fn check_output_paths(body: &JobBody, file_id: &str) -> Result<(), ApiError> {
    let JobBody::Completed { outputs, .. } = body else {
        return Ok(());
    };
    let folder = format!("outputs/{file_id}/");
    match outputs.iter().find(|o| !o.path.starts_with(&folder)) {
        Some(o) => Err(mismatch(format!(
            "output path {:?} is not under the job's {folder}",
            o.path
        ))),
        None => Ok(()),
    }
}

fn mismatch(message: String) -> ApiError {
    ApiError::Conflict {
        code: "job_mismatch",
        message,
    }
}

/// Publishes `n` as the job's event; `user` holds the service role (the route checks it).
pub async fn report(
    s: &AppState,
    user: &User,
    n: NotifyRequest,
) -> Result<NotifyAccepted, ApiError> {
    let (job_id, status) = (n.job_id.clone(), n.status);
    let (file_id, model) = (n.file_id.clone(), n.model.clone());
    let body = body_of(n)?;
    if !roar_schemas::ids::is_valid_id('j', &job_id) {
        return Err(ApiError::NotFound);
    }
    let job = s.read.job(&job_id).await?.ok_or(ApiError::NotFound)?;
    if file_id.is_some_and(|f| f != job.file_id) || model.is_some_and(|m| m != job.model) {
        return Err(mismatch("file_id or model is not the job's".into()));
    }
    check_output_paths(&body, &job.file_id)?;
    let kind = body.kind();
    let ev = JobEvent {
        meta: EventMeta::new(current_request_id(), format!("service:{}", user.id())),
        job_id: job.job_id.clone(),
        file_id: job.file_id.clone(),
        model: job.model.clone(),
        variation: job.variation.clone(),
        body,
    };
    let (p, o) = s.producer.send(JOB_EVENTS, &job.file_id, &ev).await?;
    tracing::info!(%job_id, kind, "job event from an external worker");
    Ok(NotifyAccepted {
        job_id,
        event: status,
        consistency_token: consistency_token(JOB_EVENTS, p, o),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(status: &str) -> NotifyRequest {
        serde_json::from_value(serde_json::json!({
            "job_id": "j0123456789abcdef0123456789abcdef",
            "status": status,
            "progress": 50.0,
            "error": {"code": "x", "message": "y"},
        }))
        .unwrap()
    }

    #[test]
    fn the_answered_event_is_the_kind_of_the_published_one() {
        for status in ["started", "progress", "completed", "failed", "canceled"] {
            let body = body_of(request(status)).unwrap();
            assert_eq!(body.kind(), status);
            let echoed = serde_json::to_value(request(status).status).unwrap();
            assert_eq!(echoed, status);
            assert_eq!(request(status).status.as_str(), status);
        }
    }

    #[test]
    fn a_report_is_checked_before_the_job_is_looked_up() {
        let mut n = request("started");
        n.progress = Some(100.5);
        assert!(matches!(body_of(n), Err(ApiError::Unprocessable(_))));
        let mut n = request("progress");
        n.progress = None;
        assert!(matches!(body_of(n), Err(ApiError::Unprocessable(_))));
        let mut n = request("failed");
        n.error = None;
        assert!(matches!(body_of(n), Err(ApiError::Unprocessable(_))));
        // A malformed output path is refused whatever the status, even one that drops outputs.
        for (status, path, ok) in [
            ("progress", "", false),
            ("completed", "outputs/x", false),
            (
                "completed",
                "outputs/f0123456789abcdef0123456789abcdef/pitch.csv",
                true,
            ),
        ] {
            let mut n = request(status);
            n.outputs = vec![serde_json::from_value(serde_json::json!({
                "path": path, "kind": "pitch", "content_type": "text/csv", "size": 1, "sha256": "00",
            }))
            .unwrap()];
            assert_eq!(body_of(n).is_ok(), ok, "{status} {path:?}");
        }
    }
}
