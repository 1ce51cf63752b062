//! `POST /process` for chained work: a `preset` (a pipeline from the catalogue) or one model
//! with an `input` (another job's output). Everything is checked before anything is emitted:
//! the body's shape, the catalogue (models, outputs, the preset), the file, the input job.

use axum::http::StatusCode;
use axum::Json;
use roar_common::catalog::{self, Resolved, StepRequest};
use roar_projections::JobRow;
use serde_json::Value;

use super::check_ready;
use crate::commands::pipelines::{self, Upstream};
use crate::commands::webhooks::Callback;
use crate::middleware::User;
use crate::routes::status::visible_file;
use crate::views::{stored_outputs, JobOutputRef, ModelOutputRef, ProcessRequest, ProcessResponse};
use crate::{ApiError, AppState};

fn bad(m: impl std::fmt::Display) -> ApiError {
    ApiError::Unprocessable(m.to_string())
}

fn code(emitted: bool) -> StatusCode {
    if emitted {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    }
}

/// What a chained request answers: its status, its body and the callback it registered.
pub(super) type Answer = (StatusCode, Json<ProcessResponse>, Vec<String>);

/// `{file_id, preset}`.
pub(super) async fn preset(
    s: &AppState,
    user: &User,
    body: Value,
    callback: Option<&Callback>,
) -> Result<Answer, ApiError> {
    let req: ProcessRequest = serde_json::from_value(body).map_err(bad)?;
    let alone = req.model.is_none()
        && req.models.is_none()
        && req.variation.is_none()
        && req.params.as_ref().is_none_or(Value::is_null)
        && req.input.as_ref().is_none_or(Value::is_null);
    if !alone {
        return Err(bad(
            "a preset request takes only `file_id` and `preset` (see `GET /presets`)",
        ));
    }
    let file = visible_file(s, user, &req.file_id).await?;
    check_ready(&file)?;
    let name = req.preset.unwrap_or_default();
    let preset = catalog::preset(&name).map_err(bad)?;
    let steps: Vec<StepRequest> = preset.steps.iter().map(StepRequest::from).collect();
    let planned = catalog::plan(&steps).map_err(bad)?;
    let out = pipelines::request_preset(s, user, &file, preset.name, &planned, callback).await?;
    Ok((
        code(out.emitted),
        Json(ProcessResponse::Pipeline(out.view)),
        out.callback_id.into_iter().collect(),
    ))
}

/// The input's reference, told apart by `job_id`.
enum InputRef {
    Job(JobOutputRef),
    Model(ModelOutputRef),
}

fn input_ref(v: Value) -> Result<InputRef, ApiError> {
    let shape = "`input` is {job_id, output} or {model, variation?, params?, output}";
    match &v {
        Value::Object(m) if m.contains_key("job_id") => serde_json::from_value(v)
            .map(InputRef::Job)
            .map_err(|e| bad(format!("input: {e}; {shape}"))),
        Value::Object(_) => serde_json::from_value(v)
            .map(InputRef::Model)
            .map_err(|e| bad(format!("input: {e}; {shape}"))),
        _ => Err(bad(shape)),
    }
}

/// `output` among the stored outputs of a completed job, by name (file name without extension).
fn has_output(job: &JobRow, output: &str) -> Result<(), ApiError> {
    let names: Vec<String> = stored_outputs(job)
        .iter()
        .filter_map(|o| o.path.rsplit('/').next())
        .map(|f| f.split_once('.').map_or(f, |(stem, _)| stem).to_string())
        .collect();
    if names.iter().any(|n| n == output) {
        Ok(())
    } else {
        Err(bad(format!(
            "input job {} completed without an output {output:?} (it has {})",
            job.job_id,
            names.join(", ")
        )))
    }
}

/// `{file_id, model, variation?, params?, input}`.
pub(super) async fn with_input(
    s: &AppState,
    user: &User,
    body: Value,
    callback: Option<&Callback>,
) -> Result<Answer, ApiError> {
    let req: ProcessRequest = serde_json::from_value(body).map_err(bad)?;
    if req.models.is_some() {
        return Err(bad("`input` goes with one `model`, not `models`"));
    }
    let model = req.model.ok_or_else(|| bad("missing field `model`"))?;
    let input = input_ref(req.input.unwrap_or(Value::Null))?;
    let file = visible_file(s, user, &req.file_id).await?;
    check_ready(&file)?;
    let r = catalog::resolve(&model, req.variation.as_deref(), req.params.as_ref()).map_err(bad)?;
    let output = match &input {
        InputRef::Job(j) => j.output.clone(),
        InputRef::Model(m) => m.output.clone(),
    };
    let model_up = match &input {
        InputRef::Model(m) => Some(
            catalog::resolve(&m.model, m.variation.as_deref(), m.params.as_ref())
                .map_err(|e| bad(format!("input: {e}")))?,
        ),
        InputRef::Job(_) => None,
    };
    if let Some(up) = &model_up {
        catalog::check_output(up, &output).map_err(|e| bad(format!("input: {e}")))?;
    }
    let up = match (input, model_up) {
        (InputRef::Job(j), _) => upstream_job(s, user, &file.file_id, &j).await?,
        (InputRef::Model(_), Some(up_r)) => {
            upstream_request(s, &file.file_id, &up_r, &output).await?
        }
        (InputRef::Model(_), None) => return Err(ApiError::Internal("unresolved input".into())),
    };
    let (out, callback_id) =
        pipelines::request_with_input(s, user, &file, &r, up, &output, callback).await?;
    Ok((
        code(out.emitted),
        Json(ProcessResponse::One(out.view)),
        callback_id.into_iter().collect(),
    ))
}

/// The upstream job an `input: {job_id, output}` names: the caller's, on the same file, with
/// that output (written, or to be written).
async fn upstream_job(
    s: &AppState,
    user: &User,
    file_id: &str,
    j: &JobOutputRef,
) -> Result<Upstream, ApiError> {
    let job = crate::routes::status::visible_job(s, user, &j.job_id).await?;
    if job.file_id != file_id {
        return Err(bad(format!(
            "input job {} is on file {}, not {file_id}: a job reads outputs of jobs on its own file",
            job.job_id, job.file_id
        )));
    }
    let spec = catalog::resolve(&job.model, Some(&job.variation), Some(&job.params))
        .map_err(|e| bad(format!("input job {}: {e}", job.job_id)))?;
    catalog::check_output(&spec, &j.output).map_err(|e| bad(format!("input: {e}")))?;
    let up = Upstream::from_row(&job);
    if up.completed {
        has_output(&job, &j.output)?;
        return Ok(up);
    }
    // Not completed: the pipeline asks for it again, after the jobs it reads through.
    Upstream::from_chain(file_id, &ancestry(s, job).await?)
}

/// `job` and the jobs it reads through, the one on the upload first. Each is on the same file
/// and of the same owner (a job reads outputs of jobs on its own file).
async fn ancestry(s: &AppState, job: JobRow) -> Result<Vec<JobRow>, ApiError> {
    let named = job.job_id.clone();
    let not_ready = |message: String| ApiError::Conflict {
        code: "input_not_ready",
        message,
    };
    let mut chain = vec![job];
    while let Some(input) = chain.last().and_then(JobRow::input) {
        // The named job, its ancestors and the new job must fit in one pipeline.
        if chain.len() + 1 >= catalog::MAX_STEPS {
            return Err(not_ready(format!(
                "input job {named} has not completed and reads through more than {} jobs; \
                 ask once it has completed",
                catalog::MAX_STEPS - 2
            )));
        }
        if chain.iter().any(|j| j.job_id == input.job_id) {
            return Err(ApiError::Internal(format!(
                "job {named}'s inputs form a cycle at {}",
                input.job_id
            )));
        }
        let up = s.read.job(&input.job_id).await?.ok_or_else(|| {
            not_ready(format!(
                "input job {named} has not completed and reads job {}, which is not known yet; \
                 ask once it has completed",
                input.job_id
            ))
        })?;
        chain.push(up);
    }
    chain.reverse();
    Ok(chain)
}

/// The upstream job an `input: {model, variation, params, output}` names, on the upload.
async fn upstream_request(
    s: &AppState,
    file_id: &str,
    r: &Resolved,
    output: &str,
) -> Result<Upstream, ApiError> {
    let mut up = Upstream::from_request(file_id, r);
    if let Some(row) = s.read.job(&up.step.job_id).await? {
        if row.status == roar_schemas::JobStatus::Completed {
            has_output(&row, output)?;
            up.completed = true;
        }
    }
    Ok(up)
}
