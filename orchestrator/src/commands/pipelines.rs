//! Commands on pipelines: request one (a preset, or a job whose input job has not completed
//! yet), cancel one, and read them back. The orchestrator records only `PipelineRequested` and
//! `PipelineCancelRequested` on `roar.pipelines.v1`; the process manager (`roar pipeline`)
//! requests each step's job when its input is ready.

use std::collections::HashMap;

use roar_common::catalog::{PlannedStep, Resolved};
use roar_projections::apply::FileRow;
use roar_projections::{JobRow, PipelineRow};
use roar_schemas::ids::{self, canonical_json};
use roar_schemas::topics::PIPELINES;
use roar_schemas::{
    EventMeta, JobInput, JobStatus, PipelineBody, PipelineEvent, PipelineStep, PipelineStepInput,
};

use super::jobs::{self, Requested};
use super::webhooks::{register_callback, Callback, Scope};
use super::{actor, cancel, consistency_token};
use crate::middleware::{current_request_id, User};
use crate::quotas::Admission;
use crate::views::{
    JobInputView, JobRequestView, Outcome, PipelineCancelAccepted, PipelineRequestView,
    PipelineStepView, PipelineView, StepInputView,
};
use crate::{ApiError, AppState};

/// A step before its job id is derived.
fn step(name: &str, r: &Resolved, input: Option<(String, String)>) -> PipelineStep {
    PipelineStep {
        name: name.into(),
        job_id: String::new(),
        model: r.model.into(),
        variation: r.variation.clone(),
        model_version: r.model_version.clone(),
        params_json: canonical_json(&r.params),
        input: input.map(|(step, output)| PipelineStepInput { step, output }),
    }
}

/// Derives every step's job id (upstream steps first, as `plan` orders them) and the pipeline's.
fn with_ids(
    file: &FileRow,
    mut steps: Vec<PipelineStep>,
) -> Result<(String, Vec<PipelineStep>), ApiError> {
    for i in 0..steps.len() {
        let id = ids::step_identity(&file.file_id, &steps[..i], &steps[i])
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        steps[i].job_id = id.job_id().to_string();
    }
    let pipeline_id = ids::pipeline_id(
        &file.owner,
        &file.file_id,
        steps.iter().map(|s| s.job_id.as_str()),
    );
    Ok((pipeline_id, steps))
}

/// The view of a pipeline just asked for: every step queued.
fn fresh_view(
    file: &FileRow,
    pipeline_id: &str,
    preset: Option<&str>,
    steps: &[PipelineStep],
) -> PipelineView {
    PipelineView::from_steps(
        pipeline_id.into(),
        file.file_id.clone(),
        preset.map(Into::into),
        steps
            .iter()
            .map(|s| PipelineStepView {
                name: s.name.clone(),
                job_id: s.job_id.clone(),
                model: s.model.clone(),
                variation: s.variation.clone(),
                input: s.input.as_ref().map(|i| StepInputView {
                    step: i.step.clone(),
                    output: i.output.clone(),
                }),
                status: JobStatus::Queued,
                progress: 0.0,
                error: None,
            })
            .collect(),
    )
}

/// What a pipeline request did.
pub struct PipelineRequested {
    pub view: PipelineRequestView,
    /// Whether a new event was emitted.
    pub emitted: bool,
    /// The callback registered for the pipeline's jobs, if the request had one.
    pub callback_id: Option<String>,
}

/// Emits `PipelineRequested` for `steps` unless the pipeline exists (or is pending) already.
/// A callback is stored first, following every step's job (and the pipeline's end), so the
/// dispatcher knows it before the first step's first event.
async fn emit(
    s: &AppState,
    user: &User,
    file: &FileRow,
    preset: Option<&str>,
    steps: Vec<PipelineStep>,
    callback: Option<&Callback>,
) -> Result<PipelineRequested, ApiError> {
    let (pipeline_id, steps) = with_ids(file, steps)?;
    let callback_id = register_callback(s, user, callback, || Scope {
        job_id: steps.last().map(|st| st.job_id.clone()).unwrap_or_default(),
        pipeline_id: Some(pipeline_id.clone()),
        job_ids: steps.iter().map(|st| st.job_id.clone()).collect(),
    })
    .await?;
    if let Some(p) = s.read.pipeline(&pipeline_id).await? {
        return Ok(PipelineRequested {
            view: PipelineRequestView {
                pipeline: view(s, &p).await?,
                consistency_token: None,
            },
            emitted: false,
            callback_id,
        });
    }
    let fresh = fresh_view(file, &pipeline_id, preset, &steps);
    if let Err((_, token)) = s.pending.reserve(&pipeline_id, 1) {
        return Ok(PipelineRequested {
            view: PipelineRequestView {
                pipeline: fresh,
                consistency_token: Some(token),
            },
            emitted: false,
            callback_id,
        });
    }
    let meta = EventMeta::new(current_request_id(), actor(user));
    if let Err(e) = super::erase::refuse_if_erased(s, &file.file_id).await {
        s.pending.release(&pipeline_id);
        return Err(e);
    }
    // Every step that will run counts against the owner's quota now, all or none (429 when
    // they do not fit): the process manager requests them later without asking again.
    let admission = match admit_steps(s, file, &steps, meta.occurred_at).await {
        Ok(a) => a,
        Err(e) => {
            s.pending.release(&pipeline_id);
            return Err(e);
        }
    };
    let ev = PipelineEvent {
        meta,
        pipeline_id: pipeline_id.clone(),
        file_id: file.file_id.clone(),
        owner: file.owner.clone(),
        body: PipelineBody::Requested {
            preset: preset.map(Into::into),
            steps,
        },
    };
    match s.producer.send(PIPELINES, &file.file_id, &ev).await {
        Ok((p, o)) => {
            let token = consistency_token(PIPELINES, p, o);
            s.pending.confirm(&pipeline_id, &token);
            tracing::info!(pipeline_id = %pipeline_id, file_id = %file.file_id, preset = ?preset, "pipeline requested");
            Ok(PipelineRequested {
                view: PipelineRequestView {
                    pipeline: fresh,
                    consistency_token: Some(token),
                },
                emitted: true,
                callback_id,
            })
        }
        Err(e) => {
            if let Some(a) = admission {
                a.release(s).await;
            }
            s.pending.release(&pipeline_id);
            Err(e.into())
        }
    }
}

/// Admits the jobs of `steps` that will run: not those the read model shows queued, running
/// (counted already) or completed (their worker skips them). None when no step will run.
async fn admit_steps(
    s: &AppState,
    file: &FileRow,
    steps: &[PipelineStep],
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Admission>, ApiError> {
    let mut to_run = Vec::with_capacity(steps.len());
    for st in steps {
        match s.read.job(&st.job_id).await? {
            Some(j) if !j.status.is_closed() => {}
            _ => to_run.push(st.job_id.clone()),
        }
    }
    if to_run.is_empty() {
        return Ok(None);
    }
    crate::quotas::admit_jobs(s, &file.owner, to_run, at)
        .await
        .map(Some)
}

/// `POST /process {file_id, preset}`: the preset's steps as one pipeline.
pub async fn request_preset(
    s: &AppState,
    user: &User,
    file: &FileRow,
    preset: &str,
    planned: &[PlannedStep],
    callback: Option<&Callback>,
) -> Result<PipelineRequested, ApiError> {
    let steps = planned
        .iter()
        .map(|p| step(&p.name, &p.resolved, p.input.clone()))
        .collect();
    emit(s, user, file, Some(preset), steps, callback).await
}

/// The job an `input` names, as a pipeline step.
pub struct Upstream {
    pub step: PipelineStep,
    /// The steps `step` reads through when it reads another job's output: its ancestors, the
    /// one on the upload first, each reading the one before. Empty for a job on the upload.
    pub ancestors: Vec<PipelineStep>,
    /// Whether its outputs exist (completed, or skipped because they did).
    pub completed: bool,
}

/// `base`, or `base-2`, `base-3`, … : a step name no step of `steps` has.
fn unique_name(base: &str, steps: &[PipelineStep]) -> String {
    let taken = |n: &str| steps.iter().any(|s| s.name == n);
    if !taken(base) {
        return base.to_string();
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken(n))
        .expect("an unbounded range has a free name")
}

impl Upstream {
    /// A job the read model knows. Its id must be the one its row's request derives, which
    /// holds for a job that reads the upload.
    pub fn from_row(j: &JobRow) -> Self {
        Self {
            step: PipelineStep {
                name: j.model.clone(),
                job_id: j.job_id.clone(),
                model: j.model.clone(),
                variation: j.variation.clone(),
                model_version: j.model_version.clone(),
                params_json: canonical_json(&j.params),
                input: None,
            },
            ancestors: Vec::new(),
            completed: j.status == JobStatus::Completed,
        }
    }

    /// A job that has not completed, with the jobs it reads through: `chain` is its ancestry as
    /// the read model has it, the job on the upload first and the named job last, each reading
    /// an output of the one before. Requesting them again as pipeline steps runs nothing twice
    /// (a finished job is skipped, a running one is waited for on its file's partition), and
    /// each step keeps its job id, which the check here proves: a job asked for under another
    /// model version (the catalogue changed since) has an id no step can derive, so it cannot
    /// be chained on before it completes (409 `input_not_ready`).
    pub fn from_chain(file_id: &str, chain: &[JobRow]) -> Result<Self, ApiError> {
        let mut steps: Vec<PipelineStep> = Vec::with_capacity(chain.len());
        for row in chain {
            let mut st = Self::from_row(row).step;
            st.name = unique_name(&row.model, &steps);
            if let (Some(input), Some(up)) = (row.input(), steps.last()) {
                st.input = Some(PipelineStepInput {
                    step: up.name.clone(),
                    output: input.output,
                });
            }
            let same =
                ids::step_identity(file_id, &steps, &st).is_ok_and(|id| id.job_id() == row.job_id);
            if !same {
                return Err(ApiError::Conflict {
                    code: "input_not_ready",
                    message: format!(
                        "input job {} has not completed (it is {}) and its upstream job {} cannot \
                         be requested again here; ask once it has completed",
                        chain.last().map_or("", |j| j.job_id.as_str()),
                        chain.last().map_or(JobStatus::Queued, |j| j.status),
                        row.job_id
                    ),
                });
            }
            steps.push(st);
        }
        let step = steps
            .pop()
            .ok_or_else(|| ApiError::Internal("an empty chain of input jobs".into()))?;
        Ok(Self {
            step,
            ancestors: steps,
            completed: false,
        })
    }

    /// A model request on the upload of `file_id`; `completed` is for the caller to set from
    /// the read model.
    pub fn from_request(file_id: &str, r: &Resolved) -> Self {
        let mut step = step(r.model, r, None);
        step.job_id = jobs::identity_reading(file_id, r, None)
            .job_id()
            .to_string();
        Self {
            step,
            ancestors: Vec::new(),
            completed: false,
        }
    }
}

/// `POST /process {file_id, model, input}`: a job on one output of `up`'s job. A completed
/// upstream job is read at once (one `JobRequested`); otherwise a pipeline runs the upstream
/// job (after the jobs it reads through, if any), then this one. A callback follows the one
/// job, or every job of the pipeline and its end; its id comes back with the job.
pub async fn request_with_input(
    s: &AppState,
    user: &User,
    file: &FileRow,
    r: &Resolved,
    up: Upstream,
    output: &str,
    callback: Option<&Callback>,
) -> Result<(Requested, Option<String>), ApiError> {
    let input = JobInput {
        job_id: up.step.job_id.clone(),
        model: up.step.model.clone(),
        variation: up.step.variation.clone(),
        output: output.into(),
    };
    let identity = jobs::identity_reading(&file.file_id, r, Some(input.clone()));
    let existing = s.read.job(identity.job_id()).await?;
    if up.completed || existing.is_some_and(|j| !j.status.is_closed()) {
        let id = register_callback(s, user, callback, || Scope::job(identity.job_id())).await?;
        return Ok((jobs::request(s, user, file, r, Some(input)).await?, id));
    }
    let upstream_name = up.step.name.clone();
    let mut steps = up.ancestors;
    steps.push(up.step);
    let name = if steps.iter().any(|s| s.name == r.model) {
        unique_name(&format!("{}-on-{output}", r.model), &steps)
    } else {
        r.model.to_string()
    };
    steps.push(step(&name, r, Some((upstream_name, output.into()))));
    let out = emit(s, user, file, None, steps, callback).await?;
    let job = out
        .view
        .pipeline
        .steps
        .iter()
        .find(|st| st.name == name)
        .map(|st| (st.job_id.clone(), st.status))
        .ok_or(ApiError::Internal(
            "a requested pipeline lost its step".into(),
        ))?;
    debug_assert_eq!(job.0, identity.job_id());
    let requested = Requested {
        view: JobRequestView {
            job_id: job.0,
            file_id: file.file_id.clone(),
            model: r.model.into(),
            variation: r.variation.clone(),
            model_version: r.model_version.clone(),
            params: r.params.clone(),
            status: Outcome::Job(job.1),
            attempt: None,
            outputs: None,
            consistency_token: out.view.consistency_token,
            input: Some(JobInputView::from(&input)),
            pipeline_id: Some(out.view.pipeline.pipeline_id),
        },
        emitted: out.emitted,
    };
    Ok((requested, out.callback_id))
}

/// A pipeline the caller may see, or 404 (other users' included).
pub async fn visible(
    s: &AppState,
    user: &User,
    pipeline_id: &str,
) -> Result<PipelineRow, ApiError> {
    if !ids::is_valid_id('p', pipeline_id) {
        return Err(ApiError::NotFound);
    }
    let p = s
        .read
        .pipeline(pipeline_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if user.may_access(&p.owner) {
        Ok(p)
    } else {
        Err(ApiError::NotFound)
    }
}

/// The read model's view of one pipeline.
pub async fn view(s: &AppState, p: &PipelineRow) -> Result<PipelineView, ApiError> {
    let steps = s
        .read
        .pipeline_steps(std::slice::from_ref(&p.pipeline_id))
        .await?;
    let ids: Vec<String> = steps.iter().map(|st| st.job_id.clone()).collect();
    let jobs: HashMap<String, JobRow> = s
        .read
        .jobs(&ids)
        .await?
        .into_iter()
        .map(|j| (j.job_id.clone(), j))
        .collect();
    Ok(PipelineView::new(
        p,
        &steps.iter().collect::<Vec<_>>(),
        &jobs,
    ))
}

/// The file's pipelines (those created by `until`, when given), with their steps' states taken
/// from `jobs` (the file's jobs as `/status` shows them).
pub async fn views_for_file(
    s: &AppState,
    file_id: &str,
    jobs: &[JobRow],
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<PipelineView>, ApiError> {
    let rows: Vec<PipelineRow> = s
        .read
        .pipelines_for_file(file_id)
        .await?
        .into_iter()
        .filter(|p| until.is_none_or(|t| p.created_at <= t))
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows.iter().map(|p| p.pipeline_id.clone()).collect();
    let steps = s.read.pipeline_steps(&ids).await?;
    let by_id: HashMap<String, JobRow> =
        jobs.iter().map(|j| (j.job_id.clone(), j.clone())).collect();
    Ok(rows
        .iter()
        .map(|p| {
            let mine: Vec<_> = steps
                .iter()
                .filter(|st| st.pipeline_id == p.pipeline_id)
                .collect();
            PipelineView::new(p, &mine, &by_id)
        })
        .collect())
}

/// Cancels a pipeline: `PipelineCancelRequested` (the process manager cancels the steps it has
/// not requested), and the usual job cancel for every step already requested and not finished.
pub async fn cancel(
    s: &AppState,
    user: &User,
    p: &PipelineRow,
) -> Result<PipelineCancelAccepted, ApiError> {
    if p.canceled_at.is_some() {
        return Err(ApiError::Conflict {
            code: "pipeline_canceled",
            message: "the pipeline's cancel was asked for already".into(),
        });
    }
    let current = view(s, p).await?;
    if current.steps.iter().all(|st| st.status.is_terminal()) {
        return Err(ApiError::Conflict {
            code: "pipeline_finished",
            message: format!(
                "every step has finished; the pipeline is {}",
                current.status
            ),
        });
    }
    let ev = PipelineEvent {
        meta: EventMeta::new(current_request_id(), actor(user)),
        pipeline_id: p.pipeline_id.clone(),
        file_id: p.file_id.clone(),
        owner: p.owner.clone(),
        body: PipelineBody::CancelRequested {
            reason: Some(format!("canceled by {}", actor(user))),
        },
    };
    let (part, off) = s.producer.send(PIPELINES, &p.file_id, &ev).await?;
    let mut token = consistency_token(PIPELINES, part, off);
    let ids: Vec<String> = current.steps.iter().map(|st| st.job_id.clone()).collect();
    let mut canceled = Vec::new();
    for j in s.read.jobs(&ids).await? {
        // A step's row is queued from the pipeline's request; only a job with a request of its
        // own may have reached a worker.
        if j.requested_at.is_some() && !j.status.is_terminal() {
            token = cancel::cancel(s, user, &j).await?.consistency_token;
            canceled.push(j.job_id.clone());
        }
    }
    tracing::info!(pipeline_id = %p.pipeline_id, jobs = canceled.len(), "pipeline cancel requested");
    Ok(PipelineCancelAccepted {
        pipeline_id: p.pipeline_id.clone(),
        file_id: p.file_id.clone(),
        status: "cancel_requested",
        canceled_jobs: canceled,
        consistency_token: token,
    })
}
