//! Pipelines in the read model: the `pipelines` and `pipeline_steps` rows a `roar.pipelines.v1`
//! event writes (inside the batch's transaction, in event order), and what readers get back.
//! The steps' jobs are ordinary job rows (the batch queues them, see `event::queued_steps`).

use chrono::{DateTime, Utc};
use roar_schemas::{PipelineBody, PipelineEvent};
use sqlx::{Postgres, Transaction};

use crate::error::Invalid;

/// A pipeline as the read model keeps it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct PipelineRow {
    pub pipeline_id: String,
    pub file_id: String,
    pub owner: String,
    pub preset: Option<String>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

/// One step of a pipeline; its state is its job's row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct PipelineStepRow {
    pub pipeline_id: String,
    pub name: String,
    pub position: i32,
    pub job_id: String,
    pub model: String,
    pub variation: String,
    pub input_step: Option<String>,
    pub input_output: Option<String>,
}

/// Checks a pipeline event before anything of it is applied.
pub(crate) fn validate(ev: &PipelineEvent) -> Result<(), Invalid> {
    if !roar_schemas::ids::is_valid_id('p', &ev.pipeline_id) {
        return Err(Invalid(format!(
            "pipeline_id {:?} is not a roar id",
            ev.pipeline_id
        )));
    }
    if !roar_schemas::ids::is_valid_id('f', &ev.file_id) {
        return Err(Invalid(format!(
            "file_id {:?} is not a roar id",
            ev.file_id
        )));
    }
    if let PipelineBody::Requested { steps, .. } = &ev.body {
        if steps.is_empty() {
            return Err(Invalid("a pipeline without steps".into()));
        }
        for s in steps {
            if !roar_schemas::ids::is_valid_id('j', &s.job_id) {
                return Err(Invalid(format!(
                    "step {:?}: job_id {:?} is not a roar id",
                    s.name, s.job_id
                )));
            }
            if let Some(i) = &s.input {
                if !steps.iter().any(|u| u.name == i.step) {
                    return Err(Invalid(format!(
                        "step {:?} reads {:?}, which is not a step of the pipeline",
                        s.name, i.step
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Writes what `ev` says about its pipeline. A request asked twice keeps the first one's time;
/// a cancel keeps the first cancel (a cancel of an unknown pipeline changes nothing).
pub(crate) async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    ev: &PipelineEvent,
) -> Result<(), sqlx::Error> {
    let at = ev.meta.occurred_at;
    match &ev.body {
        PipelineBody::Requested { preset, steps } => {
            sqlx::query(
                "INSERT INTO pipelines (pipeline_id, file_id, owner, preset, request_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (pipeline_id) DO UPDATE SET created_at = LEAST(pipelines.created_at, EXCLUDED.created_at)",
            )
            .bind(&ev.pipeline_id)
            .bind(&ev.file_id)
            .bind(&ev.owner)
            .bind(preset)
            .bind(&ev.meta.request_id)
            .bind(at)
            .execute(&mut **tx)
            .await?;
            let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
            let positions: Vec<i32> = (0..steps.len() as i32).collect();
            let job_ids: Vec<&str> = steps.iter().map(|s| s.job_id.as_str()).collect();
            let models: Vec<&str> = steps.iter().map(|s| s.model.as_str()).collect();
            let variations: Vec<&str> = steps.iter().map(|s| s.variation.as_str()).collect();
            let in_steps: Vec<Option<&str>> = steps
                .iter()
                .map(|s| s.input.as_ref().map(|i| i.step.as_str()))
                .collect();
            let in_outputs: Vec<Option<&str>> = steps
                .iter()
                .map(|s| s.input.as_ref().map(|i| i.output.as_str()))
                .collect();
            sqlx::query(
                "INSERT INTO pipeline_steps (pipeline_id, name, position, job_id, model, variation, input_step, input_output)
                 SELECT $1, n, p, j, m, v, i, o FROM UNNEST($2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                   AS x(n, p, j, m, v, i, o)
                 ON CONFLICT (pipeline_id, name) DO NOTHING",
            )
            .bind(&ev.pipeline_id)
            .bind(&names)
            .bind(&positions)
            .bind(&job_ids)
            .bind(&models)
            .bind(&variations)
            .bind(&in_steps)
            .bind(&in_outputs)
            .execute(&mut **tx)
            .await?;
        }
        PipelineBody::CancelRequested { reason } => {
            sqlx::query(
                "UPDATE pipelines SET canceled_at = $2, cancel_reason = $3
                 WHERE pipeline_id = $1 AND canceled_at IS NULL",
            )
            .bind(&ev.pipeline_id)
            .bind(at)
            .bind(reason)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
