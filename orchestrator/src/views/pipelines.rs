//! Pipelines (jobs on one file, some reading another's output) and presets, as `/status`,
//! `GET /pipelines/{id}`, `GET /presets` and `POST /process` show them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use roar_common::catalog::{self, Preset};
use roar_projections::{JobRow, PipelineRow, PipelineStepRow};
use roar_schemas::JobStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};

use super::jobs::JobError;
use super::schema as s;

/// What a step reads: one output of an earlier step of the pipeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepInputView {
    /// The upstream step's name.
    pub step: String,
    /// The upstream output's name (`vocals`).
    pub output: String,
}

/// One step of a pipeline and the state of its job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PipelineStepView {
    pub name: String,
    #[schema(schema_with = s::job_id)]
    pub job_id: String,
    pub model: String,
    pub variation: String,
    /// `null`: the step reads the uploaded file.
    pub input: Option<StepInputView>,
    #[schema(schema_with = s::job_status)]
    pub status: JobStatus,
    /// Percent, 0–100.
    pub progress: f32,
    /// Why it failed (`upstream_failed` when a step it reads failed).
    pub error: Option<JobError>,
}

/// A pipeline: its steps, their inputs and states, and overall progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PipelineView {
    #[schema(schema_with = s::pipeline_id)]
    pub pipeline_id: String,
    #[schema(schema_with = s::file_id)]
    pub file_id: String,
    /// The preset it was expanded from, if any.
    pub preset: Option<String>,
    /// `completed` when every step completed; `failed` or `canceled` once a step ended so and
    /// none is still queued or running; `running` while any step runs; else `queued`.
    #[schema(schema_with = s::job_status)]
    pub status: JobStatus,
    /// The mean of the steps' progress, 0–100.
    pub progress: f32,
    /// When a cancel of the pipeline was asked for.
    pub canceled_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    /// Upstream steps first.
    pub steps: Vec<PipelineStepView>,
}

/// What `roar_schemas::ids::is_valid_id('p', ..)` accepts.
/// The overall state of steps in these states.
pub fn overall(states: &[JobStatus]) -> JobStatus {
    let any = |s: JobStatus| states.contains(&s);
    if states.is_empty() || states.iter().all(|s| *s == JobStatus::Completed) {
        JobStatus::Completed
    } else if any(JobStatus::Running) {
        JobStatus::Running
    } else if any(JobStatus::Queued) {
        JobStatus::Queued
    } else if any(JobStatus::Failed) {
        JobStatus::Failed
    } else {
        JobStatus::Canceled
    }
}

impl PipelineView {
    /// A pipeline from the read model: its row, its steps and their jobs (`jobs` by job id; a
    /// step whose job row is missing shows as queued).
    pub fn new(
        p: &PipelineRow,
        steps: &[&PipelineStepRow],
        jobs: &HashMap<String, JobRow>,
    ) -> Self {
        let steps: Vec<PipelineStepView> = steps
            .iter()
            .map(|st| {
                let job = jobs.get(&st.job_id);
                PipelineStepView {
                    name: st.name.clone(),
                    job_id: st.job_id.clone(),
                    model: st.model.clone(),
                    variation: st.variation.clone(),
                    input: st
                        .input_step
                        .clone()
                        .zip(st.input_output.clone())
                        .map(|(step, output)| StepInputView { step, output }),
                    status: job.map_or(JobStatus::Queued, |j| j.status),
                    progress: job.map_or(0.0, |j| j.progress),
                    error: job.and_then(|j| {
                        j.error_code.as_ref().map(|code| JobError {
                            code: code.clone(),
                            message: j.error_message.clone(),
                            retryable: j.retryable,
                        })
                    }),
                }
            })
            .collect();
        Self::from_steps(
            p.pipeline_id.clone(),
            p.file_id.clone(),
            p.preset.clone(),
            steps,
        )
        .with_times(Some(p.created_at), p.canceled_at)
    }

    /// A pipeline of these steps (overall status and progress derived from them).
    pub fn from_steps(
        pipeline_id: String,
        file_id: String,
        preset: Option<String>,
        steps: Vec<PipelineStepView>,
    ) -> Self {
        let states: Vec<JobStatus> = steps.iter().map(|s| s.status).collect();
        let progress = if steps.is_empty() {
            100.0
        } else {
            steps.iter().map(|s| s.progress).sum::<f32>() / steps.len() as f32
        };
        PipelineView {
            pipeline_id,
            file_id,
            preset,
            status: overall(&states),
            progress,
            canceled_at: None,
            created_at: None,
            steps,
        }
    }

    fn with_times(
        mut self,
        created: Option<DateTime<Utc>>,
        canceled: Option<DateTime<Utc>>,
    ) -> Self {
        self.created_at = created;
        self.canceled_at = canceled;
        self
    }
}

/// `POST /process` with a `preset` (or an `input` whose upstream job has not completed): the
/// pipeline asked for, or the one that exists already.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineRequestView {
    #[serde(flatten)]
    pub pipeline: PipelineView,
    /// Only when requested by this or a pending request: pass to `GET /status/{file_id}?after=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_token: Option<String>,
}

/// `POST /pipelines/{pipeline_id}/cancel`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineCancelAccepted {
    #[schema(schema_with = s::pipeline_id)]
    pub pipeline_id: String,
    #[schema(schema_with = s::file_id)]
    pub file_id: String,
    /// Always `cancel_requested`: steps not yet requested end `canceled`; running ones are
    /// asked to stop.
    #[schema(schema_with = cancel_requested)]
    pub status: &'static str,
    /// The steps' jobs a cancel was sent for (those already requested and not finished).
    pub canceled_jobs: Vec<String>,
    pub consistency_token: String,
}

fn cancel_requested() -> Object {
    s::one_word("cancel_requested")
}

/// The `{pipeline_id}` path parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PipelinePath {
    /// A pipeline id (`p` and 32 lowercase hex digits).
    #[param(schema_with = s::pipeline_id)]
    pub pipeline_id: String,
}

/// A step of a preset.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresetStepView {
    pub name: String,
    pub model: String,
    pub variation: String,
    #[schema(schema_with = s::job_params)]
    pub params: Value,
    /// `null`: the step reads the uploaded file.
    pub input: Option<StepInputView>,
}

/// A preset: `POST /process {file_id, preset}` runs its steps as one pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresetView {
    pub name: String,
    pub description: String,
    /// Upstream steps first.
    pub steps: Vec<PresetStepView>,
}

impl From<&Preset> for PresetView {
    fn from(p: &Preset) -> Self {
        let steps = p
            .steps
            .iter()
            .map(|st| {
                // Every preset resolves (a catalogue test proves it); show the request as given
                // should that ever break, rather than failing the listing.
                let resolved = catalog::resolve(st.model, st.variation, Some(&st.params)).ok();
                PresetStepView {
                    name: st.name.into(),
                    model: st.model.into(),
                    variation: resolved.as_ref().map_or_else(
                        || st.variation.unwrap_or("").into(),
                        |r| r.variation.clone(),
                    ),
                    params: resolved.map_or_else(|| st.params.clone(), |r| r.params),
                    input: st.input.map(|(step, output)| StepInputView {
                        step: step.into(),
                        output: output.into(),
                    }),
                }
            })
            .collect();
        PresetView {
            name: p.name.into(),
            description: p.description.into(),
            steps,
        }
    }
}

/// `GET /presets`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresetsView {
    pub presets: Vec<PresetView>,
}

impl PresetsView {
    pub fn all() -> Self {
        PresetsView {
            presets: catalog::presets().iter().map(PresetView::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_is_done_when_every_step_is_and_failed_once_nothing_runs() {
        use JobStatus::*;
        assert_eq!(overall(&[Completed, Completed]), Completed);
        assert_eq!(overall(&[Completed, Running, Queued]), Running);
        assert_eq!(overall(&[Completed, Queued]), Queued);
        assert_eq!(overall(&[Failed, Queued]), Queued);
        assert_eq!(overall(&[Completed, Failed, Failed]), Failed);
        assert_eq!(overall(&[Completed, Failed, Canceled]), Failed);
        assert_eq!(overall(&[Completed, Canceled]), Canceled);
    }
}
