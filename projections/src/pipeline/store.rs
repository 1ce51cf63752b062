//! Every statement on the process manager's tables (`manager_pipelines`, `manager_steps`).
//! Callers hold one transaction per handled event; a pipeline's row is locked before its steps
//! are read, so two members of the group never decide for the same pipeline at once.

use roar_schemas::pipeline::{PipelineEvent, PipelineStep, PipelineStepInput};
use sqlx::{Postgres, Transaction};

use super::plan::{Step, StepState};

pub(crate) type Tx<'a> = Transaction<'a, Postgres>;

/// A pipeline as the manager keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    pub pipeline_id: String,
    pub file_id: String,
    pub owner: String,
    pub request_id: String,
    pub traceparent: Option<String>,
    pub cancel_reason: Option<String>,
    pub steps: Vec<Step>,
}

/// Records a requested pipeline with every step waiting; false if it was known already (a
/// redelivery, or the same pipeline asked again).
pub(crate) async fn insert(
    tx: &mut Tx<'_>,
    ev: &PipelineEvent,
    steps: &[PipelineStep],
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO manager_pipelines (pipeline_id, file_id, owner, request_id, traceparent)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pipeline_id) DO NOTHING",
    )
    .bind(&ev.pipeline_id)
    .bind(&ev.file_id)
    .bind(&ev.owner)
    .bind(&ev.meta.request_id)
    .bind(&ev.meta.traceparent)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        return Ok(false);
    }
    for (position, s) in steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO manager_steps (pipeline_id, name, position, job_id, model, variation,
                 model_version, params_json, input_step, input_output, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&ev.pipeline_id)
        .bind(&s.name)
        .bind(position as i32)
        .bind(&s.job_id)
        .bind(&s.model)
        .bind(&s.variation)
        .bind(&s.model_version)
        .bind(&s.params_json)
        .bind(s.input.as_ref().map(|i| &i.step))
        .bind(s.input.as_ref().map(|i| &i.output))
        .bind(StepState::Waiting.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

type PipelineRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);
type StepRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

/// Locks pipeline `id` for this transaction and reads it with its steps (in request order).
pub(crate) async fn lock(tx: &mut Tx<'_>, id: &str) -> Result<Option<Pipeline>, sqlx::Error> {
    let row: Option<PipelineRow> = sqlx::query_as(
        "SELECT pipeline_id, file_id, owner, request_id, traceparent, cancel_reason
         FROM manager_pipelines WHERE pipeline_id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((pipeline_id, file_id, owner, request_id, traceparent, cancel_reason)) = row else {
        return Ok(None);
    };
    let rows: Vec<StepRow> = sqlx::query_as(
        "SELECT name, job_id, model, variation, model_version, params_json, input_step,
                input_output, state
         FROM manager_steps WHERE pipeline_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    let steps = rows
        .into_iter()
        .map(
            |(
                name,
                job_id,
                model,
                variation,
                model_version,
                params_json,
                input_step,
                output,
                state,
            )| {
                Step {
                    def: PipelineStep {
                        name,
                        job_id,
                        model,
                        variation,
                        model_version,
                        params_json,
                        input: input_step.map(|step| PipelineStepInput {
                            step,
                            output: output.unwrap_or_default(),
                        }),
                    },
                    // Only this module writes the column; an unknown word is treated as the
                    // end of the step (nothing is emitted for it again).
                    state: StepState::parse(&state).unwrap_or(StepState::Canceled),
                }
            },
        )
        .collect();
    Ok(Some(Pipeline {
        pipeline_id,
        file_id,
        owner,
        request_id,
        traceparent,
        cancel_reason,
        steps,
    }))
}

/// The pipelines that have a step running job `job_id` (sorted, so transactions lock them in
/// the same order).
pub(crate) async fn pipelines_of_job(
    tx: &mut Tx<'_>,
    job_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT pipeline_id FROM manager_steps WHERE job_id = $1 ORDER BY pipeline_id",
    )
    .bind(job_id)
    .fetch_all(&mut **tx)
    .await
}

/// Marks the pipeline canceled (the first reason stays).
pub(crate) async fn cancel(tx: &mut Tx<'_>, id: &str, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE manager_pipelines SET cancel_reason = COALESCE(cancel_reason, $2)
         WHERE pipeline_id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Whether pipeline `id`'s song was deleted (`DELETE /songs/{file_id}` destroyed its data key,
/// [`crate::keys`]) in the life the pipeline belongs to: the key is still gone, or the
/// deletion came after the manager recorded the pipeline.
pub(crate) async fn song_deleted(tx: &mut Tx<'_>, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM manager_pipelines p JOIN {} k ON k.file_id = p.file_id
         WHERE p.pipeline_id = $1 AND k.erased_before IS NOT NULL
           AND (k.data_key IS NULL OR k.erased_before >= p.created_at))",
        crate::keys::TABLE
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await
}

/// Writes the states of `p`'s steps that differ from `before`.
pub(crate) async fn save_states(
    tx: &mut Tx<'_>,
    p: &Pipeline,
    before: &[Step],
) -> Result<(), sqlx::Error> {
    for (s, old) in p.steps.iter().zip(before) {
        if s.state == old.state {
            continue;
        }
        sqlx::query(
            "UPDATE manager_steps SET state = $3, updated_at = now(),
                 requested_at = CASE WHEN $3 = 'requested' THEN now() ELSE requested_at END
             WHERE pipeline_id = $1 AND name = $2",
        )
        .bind(&p.pipeline_id)
        .bind(&s.def.name)
        .bind(s.state.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
