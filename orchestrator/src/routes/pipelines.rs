//! `GET /pipelines/{pipeline_id}`, `POST /pipelines/{pipeline_id}/cancel` and `GET /presets`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::commands::pipelines;
use crate::extract::ApiPath;
use crate::middleware::User;
use crate::views::{
    AuthErrors, ErrorBody, PipelineCancelAccepted, PipelinePath, PipelineView, PresetsView,
};
use crate::{ApiError, AppState};

/// `GET /pipelines/{pipeline_id}`: a pipeline's steps, their inputs and states, and overall
/// progress.
#[utoipa::path(get, path = "/pipelines/{pipeline_id}", tag = "jobs", operation_id = "pipeline",
    params(PipelinePath),
    responses(
        (status = 200, description = "the pipeline and the state of each step", body = PipelineView),
        (status = 404, description = "no such pipeline of the caller's (or not projected yet)", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn get(
    State(s): State<AppState>,
    user: User,
    ApiPath(PipelinePath { pipeline_id }): ApiPath<PipelinePath>,
) -> Result<Json<PipelineView>, ApiError> {
    let p = pipelines::visible(&s, &user, &pipeline_id).await?;
    Ok(Json(pipelines::view(&s, &p).await?))
}

/// `POST /pipelines/{pipeline_id}/cancel`: steps not requested yet end `canceled`; requested
/// ones are canceled like `POST /jobs/{job_id}/cancel` does.
#[utoipa::path(post, path = "/pipelines/{pipeline_id}/cancel", tag = "jobs", operation_id = "cancel_pipeline",
    params(PipelinePath),
    responses(
        (status = 202, description = "the cancel was recorded; `canceled_jobs` were asked to stop", body = PipelineCancelAccepted),
        (status = 404, description = "no such pipeline of the caller's", body = ErrorBody),
        (status = 409, description = "every step has finished (`pipeline_finished`), or the cancel was asked for already (`pipeline_canceled`)", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn cancel(
    State(s): State<AppState>,
    user: User,
    ApiPath(PipelinePath { pipeline_id }): ApiPath<PipelinePath>,
) -> Result<(StatusCode, Json<PipelineCancelAccepted>), ApiError> {
    let p = pipelines::visible(&s, &user, &pipeline_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(pipelines::cancel(&s, &user, &p).await?),
    ))
}

/// `GET /presets`: the pipelines `POST /process {file_id, preset}` runs, step by step.
#[utoipa::path(get, path = "/presets", tag = "jobs",
    responses(
        (status = 200, description = "every preset with its steps (models, normalised params, inputs)", body = PresetsView),
        AuthErrors,
    ))]
pub async fn presets(_user: User) -> Json<PresetsView> {
    Json(PresetsView::all())
}
