//! Running one model's worker: the control-topic follower, the liveness announcements, and
//! `processor.concurrency` members of the consumer group of each (variation, version) it
//! serves (`super::served`).

use std::sync::Arc;
use std::time::Duration;

use roar_common::kafka::{run_consumer, ConsumerSpec, ControlFollower, EventProducer, KafkaError};
use roar_common::metrics::WORKER_DEVICE;
use roar_common::storage::{Storage, StorageError};
use roar_common::Config;
use roar_schemas::topics::{jobs_topic, CONTROL};
use roar_schemas::{ControlBody, ControlEvent, EventMeta};
use tokio_util::sync::CancellationToken;

use super::model::Model;
use super::served::{Member, Served};
use super::worker::{Worker, WorkerOptions};

/// Why a worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RuntimeError {
    pub fn is_retryable(&self) -> bool {
        match self {
            RuntimeError::Kafka(e) => e.is_retryable(),
            RuntimeError::Storage(e) => e.is_retryable(),
        }
    }
}

/// `model@host-pid`: unique per process, readable in logs.
pub fn worker_id(model: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{model}@{host}-{}", std::process::id())
}

/// The worker options `cfg` asks for.
pub fn options(cfg: &Config, worker_id: String) -> WorkerOptions {
    let p = &cfg.processor;
    WorkerOptions {
        worker_id,
        max_attempts: p.max_attempts,
        retry_base: Duration::from_secs(p.retry_base_seconds),
        shutdown_grace: Duration::from_secs(p.shutdown_grace_seconds),
        progress_interval: Duration::from_secs_f64(1.0 / p.progress_per_second),
        limits: crate::audio::Limits::from_config(p),
        max_retry_wait: Duration::from_secs(p.retry_base_seconds.saturating_mul(64).max(1)),
    }
}

/// Serves `model`'s jobs until `cancel` fires; the running job gets the grace period.
pub async fn serve(
    model: Arc<dyn Model>,
    cfg: &Config,
    cancel: CancellationToken,
) -> Result<(), RuntimeError> {
    let producer = EventProducer::new(&cfg.kafka)?;
    let storage = Storage::from_config(&cfg.storage)?;
    let control = ControlFollower::spawn(&cfg.kafka, cancel.child_token())?;
    let id = worker_id(model.name());
    let worker = Worker::new(
        model.clone(),
        storage,
        producer.clone(),
        control,
        options(cfg, id.clone()),
        cfg.processor.concurrency,
    );
    let served = super::served::served(model.as_ref(), cfg);
    let heartbeat_served = served.clone();
    tracing::info!(worker = %id, model = model.name(), served = ?served, "worker started");
    metrics::gauge!(WORKER_DEVICE, "model" => model.name().to_string(), "device" => model.device())
        .set(1.0);
    let gpu = super::gpu::spawn(
        model.name(),
        &model.device(),
        Duration::from_secs(cfg.processor.gpu_metrics_seconds),
        cancel.clone(),
    );
    // A group per served (variation, version), `concurrency` members each; the worker's
    // slots bound the runs of all of them together.
    let mut members = tokio::task::JoinSet::new();
    for s in served {
        let member = Member::new(worker.clone(), s);
        for _ in 0..cfg.processor.concurrency.max(1) {
            let spec = ConsumerSpec {
                group: member.group().to_string(),
                topics: vec![jobs_topic(model.name())],
                kafka: cfg.kafka.clone(),
                fetch_wait_ms: cfg.processor.fetch_wait_ms,
            };
            members.spawn(run_consumer(
                spec,
                member.clone(),
                producer.clone(),
                cancel.clone(),
            ));
        }
    }
    // Announced once the groups are joining: a status that says a worker serves a version is
    // then true by the time it reads the job.
    let heartbeat = tokio::spawn(announce(
        producer.clone(),
        model.clone(),
        heartbeat_served,
        id.clone(),
        cfg.processor.heartbeat_seconds,
        cancel.clone(),
    ));
    let mut result = Ok(());
    while let Some(r) = members.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::error!(error = %e, "consumer stopped");
            cancel.cancel();
            result = Err(e.into());
        }
    }
    let _ = heartbeat.await;
    if let Some(gpu) = gpu {
        let _ = gpu.await;
    }
    producer.drain(Duration::from_secs(5)).await;
    result
}

/// Sends `WorkerAlive` every `every_s` seconds, and a last one with `stopping` at shutdown, so
/// `GET /models` can tell which models have a live worker.
async fn announce(
    producer: EventProducer,
    model: Arc<dyn Model>,
    served: Vec<Served>,
    worker: String,
    every_s: u64,
    cancel: CancellationToken,
) {
    let event = |stopping: bool| ControlEvent {
        meta: EventMeta::new(String::new(), format!("worker:{worker}")),
        job_id: String::new(),
        body: ControlBody::WorkerAlive {
            worker: worker.clone(),
            model: model.name().into(),
            model_version: model.version(),
            variations: served.iter().map(|s| s.variation.clone()).collect(),
            versions: served.iter().map(|s| s.version.clone()).collect(),
            device: model.device(),
            interval_seconds: every_s.min(i32::MAX as u64) as i32,
            stopping,
        },
    };
    let mut tick = tokio::time::interval(Duration::from_secs(every_s.max(1)));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = producer.send(CONTROL, &worker, &event(false)).await {
                    tracing::warn!(error = %e, "liveness announcement not sent");
                }
            }
        }
    }
    let _ = producer.send(CONTROL, &worker, &event(true)).await;
}
