//! The consumer side: each job event becomes one pending delivery per matching registration,
//! recorded in Postgres before the offset moves. Sending happens elsewhere ([`crate::deliver`]),
//! so a slow or dead endpoint never holds a partition.

use async_trait::async_trait;
use chrono::Utc;
use roar_common::kafka::{Delivery, HandleError, Handler};
use roar_schemas::topics::JOB_EVENTS;
use roar_schemas::{JobEvent, JobEventKind};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;

/// The kinds of job event a registration that names no filter gets: every way a job ends.
pub const DEFAULT_KINDS: [JobEventKind; 4] = [
    JobEventKind::Completed,
    JobEventKind::Failed,
    JobEventKind::Canceled,
    JobEventKind::Skipped,
];

/// Whether a kind is ever on the job-events topic (`queued` is not: the projector derives it
/// from the request), so a filter may name it.
fn on_topic(kind: JobEventKind) -> bool {
    kind != JobEventKind::Queued
}

/// The event type receivers see, and filters name: `job.<kind>`.
pub fn event_type(kind: JobEventKind) -> String {
    format!("job.{kind}")
}

/// How a pipeline a callback follows ended: `pipeline.<outcome>` once every job of it has.
pub const PIPELINE_OUTCOMES: [&str; 3] = ["completed", "failed", "canceled"];

/// The pipeline's outcome from how each of its jobs ended: failed if one failed, else canceled
/// if one was, else completed (`skipped` jobs had their outputs already).
pub fn pipeline_outcome<'a>(kinds: impl IntoIterator<Item = &'a str>) -> &'static str {
    let kinds: Vec<&str> = kinds.into_iter().collect();
    if kinds.contains(&"failed") {
        "failed"
    } else if kinds.contains(&"canceled") {
        "canceled"
    } else {
        "completed"
    }
}

/// The filters of a registration that names none ([`DEFAULT_KINDS`]).
pub fn default_events() -> Vec<String> {
    DEFAULT_KINDS.into_iter().map(event_type).collect()
}

/// Every filter a registration may name: `*`, `job.*`, `job.<kind>` per kind on the topic,
/// then `pipeline.*` and `pipeline.<outcome>` (delivered to the callbacks of a preset or
/// chained request, which follow a pipeline, and to a user's webhooks for each pipeline of
/// theirs).
pub fn filter_words() -> Vec<String> {
    ["*", "job.*"]
        .into_iter()
        .map(str::to_string)
        .chain(
            JobEventKind::ALL
                .iter()
                .copied()
                .filter(|k| on_topic(*k))
                .map(event_type),
        )
        .chain(std::iter::once("pipeline.*".to_string()))
        .chain(PIPELINE_OUTCOMES.iter().map(|o| format!("pipeline.{o}")))
        .collect()
}

/// Longest an event waits for the read model to name its job's owner before it goes to the
/// job's own callbacks only (the projector normally knows the file long before its jobs run).
const OWNER_WAIT_SECONDS: i64 = 30;

/// Checks filters: `*`, `job.*` or `job.<kind>`; the error names the valid ones.
pub fn check_filters(events: &[String]) -> Result<(), String> {
    let valid = filter_words();
    match events.iter().find(|e| !valid.contains(e)) {
        None => Ok(()),
        Some(e) => Err(format!(
            "unknown event filter {e:?}: use one of {}",
            valid.join(", ")
        )),
    }
}

/// Whether `filters` select the event type `ty` (`job.completed`, `pipeline.failed`).
pub fn matches(filters: &[String], ty: &str) -> bool {
    filters.iter().any(|f| {
        f == "*"
            || f == ty
            || f.strip_suffix('*')
                .is_some_and(|ns| ns.ends_with('.') && ty.starts_with(ns))
    })
}

/// The body of a pipeline's end: `{type, timestamp, data: {event_id, pipeline_id, file_id,
/// jobs: [{job_id, ended}]}}`, the jobs in the pipeline's order.
pub fn pipeline_body(
    event_id: &str,
    outcome: &str,
    pipeline_id: &str,
    ev: &JobEvent,
    jobs: &[(String, String)],
) -> String {
    let jobs: Vec<_> = jobs
        .iter()
        .map(|(j, k)| json!({"job_id": j, "ended": k}))
        .collect();
    json!({
        "type": format!("pipeline.{outcome}"),
        "timestamp": ev.meta.occurred_at,
        "data": {
            "event_id": event_id,
            "pipeline_id": pipeline_id,
            "file_id": ev.file_id,
            "jobs": jobs,
        },
    })
    .to_string()
}

/// The JSON body receivers get: `{type, timestamp, data}`; no file names or user ids.
pub fn body(ev: &JobEvent) -> String {
    json!({
        "type": event_type(ev.body.event_kind()),
        "timestamp": ev.meta.occurred_at,
        "data": {
            "event_id": ev.meta.event_id,
            "job_id": ev.job_id,
            "file_id": ev.file_id,
            "model": ev.model,
            "variation": ev.variation,
            "event": ev.body,
        },
    })
    .to_string()
}

/// The handler of `roar.job-events.v1` in the group `roar-webhooks`.
pub struct Recorder {
    pub pool: PgPool,
}

fn db(e: sqlx::Error) -> HandleError {
    HandleError::Retry(format!("webhook tables: {e}"))
}

impl Recorder {
    async fn on_job(&self, ev: &JobEvent) -> Result<(), HandleError> {
        let ty = event_type(ev.body.event_kind());
        let (regs, owner) = store::candidates(&self.pool, &ev.job_id, &ev.file_id)
            .await
            .map_err(db)?;
        if owner.is_none()
            && (Utc::now() - ev.meta.occurred_at).num_seconds() < OWNER_WAIT_SECONDS
            && store::any_user_webhooks(&self.pool).await.map_err(db)?
        {
            return Err(HandleError::Retry(format!(
                "the owner of job {} is not in the read model yet",
                ev.job_id
            )));
        }
        let ids: Vec<String> = regs
            .iter()
            .filter(|r| matches(&r.events, &ty))
            .map(|r| r.webhook_id.clone())
            .collect();
        // Callbacks following a pipeline this job ends a step of.
        let ends = DEFAULT_KINDS.contains(&ev.body.event_kind());
        let following: Vec<&store::Registration> = regs
            .iter()
            .filter(|r| ends && r.pipeline_id.is_some() && r.job_ids.contains(&ev.job_id))
            .collect();
        // The owner's own webhooks that take a pipeline's end hear the end of every pipeline
        // this job is a step of.
        let takes_ends = |r: &&store::Registration| {
            r.job_id.is_none()
                && PIPELINE_OUTCOMES
                    .iter()
                    .any(|o| matches(&r.events, &format!("pipeline.{o}")))
        };
        let users: Vec<&store::Registration> = regs.iter().filter(takes_ends).collect();
        let pipelines = if ends && !users.is_empty() {
            store::pipelines_of(&self.pool, &ev.job_id)
                .await
                .map_err(db)?
        } else {
            Vec::new()
        };
        if ids.is_empty() && following.is_empty() && pipelines.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut n = store::record(&mut tx, &ids, &ev.meta.event_id, &ty, &body(ev), Utc::now())
            .await
            .map_err(db)?;
        let kind = ev.body.event_kind().to_string();
        for r in following {
            let Some(jobs) = store::mark_ended(&mut tx, &r.webhook_id, &ev.job_id, &kind)
                .await
                .map_err(db)?
            else {
                continue;
            };
            let outcome = pipeline_outcome(jobs.iter().map(|(_, k)| k.as_str()));
            let pty = format!("pipeline.{outcome}");
            if !matches(&r.events, &pty) {
                continue;
            }
            let pipeline_id = r.pipeline_id.as_deref().unwrap_or_default();
            // One end per pipeline and registration: a repeat records nothing new.
            let event_id = format!("{pipeline_id}.ended");
            let pbody = pipeline_body(&event_id, outcome, pipeline_id, ev, &jobs);
            let one = std::slice::from_ref(&r.webhook_id);
            n += store::record(&mut tx, one, &event_id, &pty, &pbody, Utc::now())
                .await
                .map_err(db)?;
        }
        for pipeline_id in &pipelines {
            let Some(jobs) = store::pipeline_step_ended(&mut tx, pipeline_id, &ev.job_id, &kind)
                .await
                .map_err(db)?
            else {
                continue;
            };
            let outcome = pipeline_outcome(jobs.iter().map(|(_, k)| k.as_str()));
            let pty = format!("pipeline.{outcome}");
            let to: Vec<String> = users
                .iter()
                .filter(|r| matches(&r.events, &pty))
                .map(|r| r.webhook_id.clone())
                .collect();
            if to.is_empty() {
                continue;
            }
            // The same id as a callback's: a receiver that gets both drops the repeat.
            let event_id = format!("{pipeline_id}.ended");
            let pbody = pipeline_body(&event_id, outcome, pipeline_id, ev, &jobs);
            n += store::record(&mut tx, &to, &event_id, &pty, &pbody, Utc::now())
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        tracing::debug!(job_id = %ev.job_id, file_id = %ev.file_id, event_type = %ty, deliveries = n, "webhook deliveries recorded");
        Ok(())
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, d: &Delivery, _cancel: &CancellationToken) -> Result<(), HandleError> {
        if d.topic != JOB_EVENTS {
            return Ok(());
        }
        let ev: JobEvent = d.decode()?;
        self.on_job(&ev).await
    }
}
