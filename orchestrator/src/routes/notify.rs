//! `POST /notify`: workers outside the cluster (no Kafka access) report a job's progress or
//! end through the orchestrator, which publishes it as the same job event an in-cluster worker
//! would emit ([`crate::commands::notify`]). Only tokens with the `service` role may call it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::commands;
use crate::extract::ApiJson;
use crate::middleware::User;
use crate::views::{AuthErrors, ErrorBody, JsonBodyErrors, NotifyAccepted, NotifyRequest};
use crate::{ApiError, AppState};

/// `POST /notify`.
#[utoipa::path(post, path = "/notify", tag = "workers",
    request_body = NotifyRequest,
    responses(
        (status = 202, description = "the job event was published", body = NotifyAccepted),
        (status = 403, description = "needs the service role", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "a file_id, model or output path that is not the job's (`job_mismatch`)", body = ErrorBody),
        JsonBodyErrors,
        (status = 422, description = "the JSON does not have the documented shape; `progress` without a percent or outside 0..=100; `failed` without `error`; an output path that is not a key under an output folder", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn notify(
    State(s): State<AppState>,
    user: User,
    ApiJson(n): ApiJson<NotifyRequest>,
) -> Result<(StatusCode, Json<NotifyAccepted>), ApiError> {
    if !user.0.has_role("service") {
        return Err(ApiError::Forbidden(
            "this endpoint needs the service role".into(),
        ));
    }
    let accepted = commands::notify::report(&s, &user, n).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
