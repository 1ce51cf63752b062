//! `POST /notify`: workers outside the cluster (no Kafka access) report a job's progress or
//! end through the orchestrator, which publishes it as the same job event an in-cluster worker
//! would emit. Only tokens with the `service` role may call it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use roar_schemas::topics::JOB_EVENTS;
use roar_schemas::{EventMeta, JobBody, JobEvent, Output};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::ApiJson;
use crate::jobs::consistency_token;
use crate::middleware::{current_request_id, User};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    job_id: String,
    /// Checked against the job when given.
    file_id: Option<String>,
    model: Option<String>,
    status: Reported,
    worker: Option<String>,
    attempt: Option<i32>,
    progress: Option<f32>,
    message: Option<String>,
    #[serde(default)]
    outputs: Vec<Output>,
    duration_seconds: Option<f64>,
    error: Option<NotifyError>,
}

/// What an external worker reports: the job event it stands for.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reported {
    Started,
    Progress,
    Completed,
    Failed,
    Canceled,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyError {
    code: String,
    message: String,
    #[serde(default)]
    retryable: bool,
}

fn body_of(n: Notify, file_id: &str) -> Result<JobBody, ApiError> {
    let bad = |m: &str| ApiError::Unprocessable(m.to_string());
    for o in &n.outputs {
        let under = format!("outputs/{file_id}/");
        let clean = o.path.starts_with(&under)
            && o.path
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..");
        if !clean {
            return Err(ApiError::Unprocessable(format!(
                "output path {:?} must be a key under {under}",
                o.path
            )));
        }
    }
    Ok(match n.status {
        Reported::Started => JobBody::Started {
            worker: n.worker.unwrap_or_else(|| "external".into()),
            attempt: n.attempt.unwrap_or(1),
        },
        Reported::Progress => {
            let p = n
                .progress
                .ok_or_else(|| bad("progress needs `progress` (0..=100)"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(bad("progress must be within 0..=100"));
            }
            JobBody::Progress {
                percent: p,
                message: n.message.unwrap_or_default(),
            }
        }
        Reported::Completed => JobBody::Completed {
            outputs: n.outputs,
            duration_seconds: n.duration_seconds.unwrap_or(0.0),
        },
        Reported::Failed => {
            let e = n
                .error
                .ok_or_else(|| bad("failed needs `error` {code, message}"))?;
            JobBody::Failed {
                code: e.code,
                message: e.message,
                retryable: e.retryable,
            }
        }
        Reported::Canceled => JobBody::Canceled {
            reason: n.message.unwrap_or_else(|| "canceled by worker".into()),
        },
    })
}

/// `POST /notify`.
#[utoipa::path(post, path = "/notify", tag = "workers",
    request_body = crate::openapi::NotifyRequest,
    responses(
        (status = 202, description = "the job event was published"),
        (status = 403, description = "needs the service role", body = crate::openapi::ErrorBody),
        (status = 404, description = "no such job", body = crate::openapi::ErrorBody),
        (status = 422, description = "invalid status, progress, outputs, or a file/model that is not the job's", body = crate::openapi::ErrorBody),
    ))]
pub async fn notify(
    State(s): State<AppState>,
    user: User,
    ApiJson(n): ApiJson<Notify>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !user.0.has_role("service") {
        return Err(ApiError::Forbidden(
            "this endpoint needs the service role".into(),
        ));
    }
    if !roar_schemas::ids::is_valid_id('j', &n.job_id) {
        return Err(ApiError::NotFound);
    }
    let job = s.read.job(&n.job_id).await?.ok_or(ApiError::NotFound)?;
    if n.file_id.as_deref().is_some_and(|f| f != job.file_id)
        || n.model.as_deref().is_some_and(|m| m != job.model)
    {
        return Err(ApiError::Unprocessable(
            "file_id or model does not match the job".into(),
        ));
    }
    let job_id = n.job_id.clone();
    let body = body_of(n, &job.file_id)?;
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
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({ "job_id": job_id, "event": kind, "consistency_token": consistency_token(JOB_EVENTS, p, o) }),
        ),
    ))
}
