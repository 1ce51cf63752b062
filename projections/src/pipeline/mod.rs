//! The pipelines' process manager (`roar pipeline`, consumer group `roar-pipeline`): reads
//! `roar.pipelines.v1` and `roar.job-events.v1` and requests each step's job once the step it
//! reads from is done, ends the dependents of a failed or canceled step (`upstream_failed`,
//! `JobCanceled`), and cancels what a canceled pipeline, or one whose song was deleted, has
//! not run yet.
//!
//! Its state is in Postgres (`manager_pipelines`, `manager_steps`), never only in memory. For
//! each event: lock the pipeline's row → decide ([`plan`]) → emit → write the new states →
//! commit → store the offset. Every emitted event has a deterministic id (pipeline, step, kind),
//! so a crash between emitting and committing re-emits the same events, which the projector
//! drops and a worker skips (its outputs exist); after the commit the decision is taken and a
//! redelivered event emits nothing.

pub mod plan;
mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use roar_common::kafka::{
    run_consumer, ConsumerSpec, Delivery, EventProducer, HandleError, Handler, KafkaError,
};
use roar_common::metrics::{PIPELINE_EVENTS, PIPELINE_HANDOFF_SECONDS, PIPELINE_STEPS};
use roar_common::Config;
use roar_schemas::ids::{is_valid_id, step_identity};
use roar_schemas::pipeline::{PipelineBody, PipelineEvent, PipelineStep};
use roar_schemas::topics::{self, jobs_topic, CONTROL, JOB_EVENTS, PIPELINES};
use roar_schemas::{
    now_micros, ControlBody, ControlEvent, DeadLetterKind, EventMeta, JobBody, JobEvent, JobStatus,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use plan::{Action, JobOutcome, Step, StepState};
use store::{Pipeline, Tx};

/// The manager's consumer group.
pub const GROUP: &str = "roar-pipeline";
/// The `actor` of every event the manager emits.
pub const ACTOR: &str = "service:roar-pipeline";

/// The id of the event the manager emits for `step` of `pipeline_id` (`kind`: requested,
/// upstream_failed, canceled, cancel): the same decision always has the same id.
pub fn event_id(pipeline_id: &str, step: &str, kind: &str) -> String {
    let name = format!("roar.pipeline.v1/{pipeline_id}/{step}/{kind}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// Runs the manager until `cancel` fires.
pub async fn run(cfg: &Config, pool: PgPool, cancel: CancellationToken) -> Result<(), KafkaError> {
    let producer = EventProducer::new(&cfg.kafka)?;
    let handler = Arc::new(Manager {
        pool,
        producer: producer.clone(),
    });
    let spec = ConsumerSpec {
        group: GROUP.into(),
        topics: vec![PIPELINES.into(), JOB_EVENTS.into()],
        kafka: cfg.kafka.clone(),
        fetch_wait_ms: cfg.pipeline.fetch_wait_ms,
    };
    // Zero-valued series from the start, so dashboards and alerts see the role before its
    // first pipeline.
    for outcome in ["requested", "upstream_failed", JobStatus::Canceled.as_str()] {
        metrics::counter!(PIPELINE_STEPS, "outcome" => outcome).increment(0);
    }
    tracing::info!("pipeline manager started");
    let result = run_consumer(spec, handler, producer.clone(), cancel).await;
    producer.drain(Duration::from_secs(5)).await;
    result
}

/// The handler of both topics.
pub struct Manager {
    pool: PgPool,
    producer: EventProducer,
}

fn db(e: sqlx::Error) -> HandleError {
    HandleError::Retry(format!("pipeline state: {e}"))
}

fn send_failed(e: KafkaError) -> HandleError {
    HandleError::Retry(e.to_string())
}

fn invalid(reason: impl Into<String>) -> HandleError {
    HandleError::poison(DeadLetterKind::Invalid, reason)
}

/// Refuses a pipeline the manager could not run as asked: a malformed DAG, ids that are not
/// roar's, a model without a topic, or a step whose job id is not the one its identity gives.
fn check(ev: &PipelineEvent, steps: &[PipelineStep]) -> Result<(), HandleError> {
    plan::validate(steps).map_err(|e| invalid(e.to_string()))?;
    if !is_valid_id('p', &ev.pipeline_id) || !is_valid_id('f', &ev.file_id) {
        return Err(invalid("pipeline_id or file_id is not a roar id"));
    }
    for s in steps {
        if !topics::MODELS.contains(&s.model.as_str()) {
            return Err(invalid(format!(
                "step {:?}: unknown model {:?}",
                s.name, s.model
            )));
        }
        let id = step_identity(&ev.file_id, steps, s).map_err(|e| invalid(e.to_string()))?;
        if id.job_id() != s.job_id {
            return Err(invalid(format!(
                "step {:?}: job_id {} is not its identity's {}",
                s.name,
                s.job_id,
                id.job_id()
            )));
        }
    }
    Ok(())
}

impl Manager {
    fn meta(p: &Pipeline, step: &str, kind: &str) -> EventMeta {
        EventMeta {
            event_id: event_id(&p.pipeline_id, step, kind),
            occurred_at: now_micros(),
            request_id: p.request_id.clone(),
            traceparent: p.traceparent.clone(),
            actor: ACTOR.into(),
        }
    }

    fn job_event(p: &Pipeline, s: &PipelineStep, meta: EventMeta, body: JobBody) -> JobEvent {
        JobEvent {
            meta,
            job_id: s.job_id.clone(),
            file_id: p.file_id.clone(),
            model: s.model.clone(),
            variation: s.variation.clone(),
            body,
        }
    }

    /// Emits the event of one decision; returns once the broker has it.
    async fn emit(
        &self,
        p: &Pipeline,
        action: &Action,
        trigger: Option<DateTime<Utc>>,
    ) -> Result<(), HandleError> {
        let defs: Vec<PipelineStep> = p.steps.iter().map(|s| s.def.clone()).collect();
        let Some(step) = defs.iter().find(|s| s.name == action.step()) else {
            return Ok(());
        };
        match action {
            Action::Request { .. } => {
                // Checked when the pipeline was recorded; the identity is derived again so the
                // request names exactly the job the pipeline's read model shows.
                let id =
                    step_identity(&p.file_id, &defs, step).map_err(|e| invalid(e.to_string()))?;
                let req = id.request(Self::meta(p, &step.name, "requested"), p.owner.clone(), 1);
                self.producer
                    .send(&jobs_topic(&step.model), &p.file_id, &req)
                    .await
                    .map_err(send_failed)?;
                metrics::counter!(PIPELINE_STEPS, "outcome" => "requested").increment(1);
                if let Some(t) = trigger {
                    let s = (Utc::now() - t).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
                    metrics::histogram!(PIPELINE_HANDOFF_SECONDS).record(s);
                }
                tracing::info!(pipeline_id = %p.pipeline_id, step = %step.name, job_id = %step.job_id, "step requested");
            }
            Action::Fail {
                upstream_step,
                upstream_job,
                ..
            } => {
                let body = JobBody::Failed {
                    code: "upstream_failed".into(),
                    message: format!("upstream job {upstream_job} (step {upstream_step}) failed"),
                    retryable: false,
                };
                let meta = Self::meta(p, &step.name, "upstream_failed");
                let ev = Self::job_event(p, step, meta, body);
                self.producer
                    .send(JOB_EVENTS, &p.file_id, &ev)
                    .await
                    .map_err(send_failed)?;
                metrics::counter!(PIPELINE_STEPS, "outcome" => "upstream_failed").increment(1);
            }
            Action::Cancel { reason, .. } => {
                let meta = Self::meta(p, &step.name, JobStatus::Canceled.as_str());
                let body = JobBody::Canceled {
                    reason: reason.clone(),
                };
                let ev = Self::job_event(p, step, meta, body);
                self.producer
                    .send(JOB_EVENTS, &p.file_id, &ev)
                    .await
                    .map_err(send_failed)?;
                metrics::counter!(PIPELINE_STEPS, "outcome" => JobStatus::Canceled.as_str())
                    .increment(1);
            }
        }
        Ok(())
    }

    /// Takes every decision due for `p` (whose steps were `before` when the event arrived),
    /// emits their events and writes the new states in `tx`.
    async fn decide(
        &self,
        tx: &mut Tx<'_>,
        p: &mut Pipeline,
        before: &[Step],
        trigger: Option<DateTime<Utc>>,
    ) -> Result<(), HandleError> {
        // A deleted song's pipeline ends here: its song's one cancel stopped the steps already
        // requested (the workers follow it), and nothing more is requested for it.
        if p.cancel_reason.is_none() && store::song_deleted(tx, &p.pipeline_id).await.map_err(db)? {
            let reason = "its song was deleted";
            store::cancel(tx, &p.pipeline_id, reason)
                .await
                .map_err(db)?;
            p.cancel_reason = Some(reason.into());
        }
        let actions = plan::advance(&mut p.steps, p.cancel_reason.as_deref());
        for a in &actions {
            self.emit(p, a, trigger).await?;
        }
        store::save_states(tx, p, before).await.map_err(db)
    }

    async fn on_requested(
        &self,
        ev: &PipelineEvent,
        steps: &[PipelineStep],
    ) -> Result<(), HandleError> {
        check(ev, steps)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        store::insert(&mut tx, ev, steps).await.map_err(db)?;
        let Some(mut p) = store::lock(&mut tx, &ev.pipeline_id).await.map_err(db)? else {
            return Err(HandleError::Retry("pipeline row vanished".into()));
        };
        let before = p.steps.clone();
        self.decide(&mut tx, &mut p, &before, None).await?;
        tx.commit().await.map_err(db)
    }

    async fn on_cancel(&self, ev: &PipelineEvent, reason: Option<&str>) -> Result<(), HandleError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some(mut p) = store::lock(&mut tx, &ev.pipeline_id).await.map_err(db)? else {
            // Same key and topic as its request, so the request came first if there was one.
            tracing::warn!(pipeline_id = %ev.pipeline_id, "cancel of an unknown pipeline ignored");
            return Ok(());
        };
        let reason = reason.unwrap_or("canceled by request").to_string();
        if p.cancel_reason.is_none() {
            // The steps already requested are the workers' to stop; the orchestrator asks too,
            // and a second CancelRequested for a job changes nothing.
            for s in p.steps.iter().filter(|s| s.state == StepState::Requested) {
                let cancel = ControlEvent {
                    meta: Self::meta(&p, &s.def.name, "cancel"),
                    job_id: s.def.job_id.clone(),
                    body: ControlBody::CancelRequested {
                        file_id: p.file_id.clone(),
                        reason: format!("pipeline canceled: {reason}"),
                    },
                };
                self.producer
                    .send(CONTROL, &s.def.job_id, &cancel)
                    .await
                    .map_err(send_failed)?;
            }
            store::cancel(&mut tx, &p.pipeline_id, &reason)
                .await
                .map_err(db)?;
            p.cancel_reason = Some(reason);
        }
        let before = p.steps.clone();
        self.decide(&mut tx, &mut p, &before, None).await?;
        tx.commit().await.map_err(db)
    }

    async fn on_job(&self, ev: &JobEvent) -> Result<(), HandleError> {
        let outcome = match &ev.body {
            JobBody::Completed { .. } | JobBody::Skipped { .. } => JobOutcome::Done,
            JobBody::Failed { .. } => JobOutcome::Failed,
            JobBody::Canceled { .. } => JobOutcome::Canceled,
            _ => return Ok(()),
        };
        // The manager's own failures and cancels were applied when it emitted them; read back,
        // they would end the same job's step in another pipeline that still wants it.
        if ev.meta.actor == ACTOR {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let ids = store::pipelines_of_job(&mut tx, &ev.job_id)
            .await
            .map_err(db)?;
        for id in ids {
            let Some(mut p) = store::lock(&mut tx, &id).await.map_err(db)? else {
                continue;
            };
            let before = p.steps.clone();
            if plan::record_outcome(&mut p.steps, &ev.job_id, outcome) {
                self.decide(&mut tx, &mut p, &before, Some(ev.meta.occurred_at))
                    .await?;
            }
        }
        tx.commit().await.map_err(db)
    }

    async fn handle_once(&self, d: &Delivery) -> Result<(), HandleError> {
        if d.topic == PIPELINES {
            let ev: PipelineEvent = d.decode()?;
            let span = tracing::info_span!("pipeline", pipeline_id = %ev.pipeline_id, file_id = %ev.file_id, request_id = %ev.meta.request_id);
            // Instrumented, not entered: a guard held across these awaits would leave the span
            // on the stack of a thread the future left (see clippy.toml).
            async {
                match &ev.body {
                    PipelineBody::Requested { steps, .. } => {
                        metrics::counter!(PIPELINE_EVENTS, "kind" => "requested").increment(1);
                        self.on_requested(&ev, steps).await
                    }
                    PipelineBody::CancelRequested { reason } => {
                        metrics::counter!(PIPELINE_EVENTS, "kind" => "cancel_requested")
                            .increment(1);
                        self.on_cancel(&ev, reason.as_deref()).await
                    }
                }
            }
            .instrument(span)
            .await
        } else if d.topic == JOB_EVENTS {
            let ev: JobEvent = d.decode()?;
            self.on_job(&ev).await
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Handler for Manager {
    /// Tries until the database and the broker take it: giving up on an event would strand its
    /// pipeline (a dead letter here ends nothing a user waits on). Shutdown abandons it.
    async fn handle(&self, d: &Delivery, cancel: &CancellationToken) -> Result<(), HandleError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.handle_once(d).await {
                Err(HandleError::Retry(reason)) => {
                    tracing::warn!(topic = %d.topic, partition = d.partition, offset = d.offset, %reason, "pipeline event not handled yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = cancel.cancelled() => return Err(HandleError::Abandoned),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                other => return other,
            }
        }
    }

    /// A pipeline the manager refused ends every step it names as failed, so none stays
    /// `queued` in the read model.
    async fn dead_lettered(
        &self,
        d: &Delivery,
        _kind: DeadLetterKind,
        reason: &str,
    ) -> Result<(), HandleError> {
        if d.topic != PIPELINES {
            return Ok(());
        }
        let Ok(ev) = d.decode::<PipelineEvent>() else {
            return Ok(());
        };
        let PipelineBody::Requested { steps, .. } = &ev.body else {
            return Ok(());
        };
        if !is_valid_id('f', &ev.file_id) {
            return Ok(());
        }
        let p = Pipeline {
            pipeline_id: ev.pipeline_id.clone(),
            file_id: ev.file_id.clone(),
            owner: ev.owner.clone(),
            request_id: ev.meta.request_id.clone(),
            traceparent: ev.meta.traceparent.clone(),
            cancel_reason: None,
            steps: Vec::new(),
        };
        for s in steps.iter().filter(|s| is_valid_id('j', &s.job_id)) {
            let body = JobBody::Failed {
                code: "invalid_pipeline".into(),
                message: format!("pipeline {} was refused: {reason}", ev.pipeline_id),
                retryable: false,
            };
            let ev = Self::job_event(&p, s, Self::meta(&p, &s.name, "invalid"), body);
            self.producer
                .send(JOB_EVENTS, &p.file_id, &ev)
                .await
                .map_err(send_failed)?;
        }
        Ok(())
    }
}
