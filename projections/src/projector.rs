//! The projector loop: manual partition assignment from offsets kept in Postgres, batches applied
//! in one transaction together with those offsets, poison events to the dead-letter topic.
//!
//! Why manual assignment rather than a consumer group: the start position must come from the
//! database, atomically with the rows, and a rebalance callback cannot run an async query.
//! Several projectors may still run at once (rolling deploys): each transaction locks the
//! partitions' offset rows and skips events at or below the stored position, so a second
//! instance never applies an event twice.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use roar_common::config::KafkaConfig;
use roar_common::kafka::{consumer_config, Delivery, EventProducer, IdleGate};
use roar_common::Config;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::{apply_batch, Sink, GROUP};
use crate::error::ProjectionError;
use crate::event::projected_topics;
use crate::{lag, offsets};

/// Runs the projector until `cancel` fires.
pub async fn run(
    cfg: &Config,
    pool: PgPool,
    producer: EventProducer,
    cancel: CancellationToken,
) -> Result<(), ProjectionError> {
    let consumer = new_consumer(cfg)?;
    assign_from_db(&consumer, &cfg.kafka, &pool).await?;
    let lag_task = tokio::spawn(lag::report_loop(
        cfg.kafka.clone(),
        pool.clone(),
        cancel.clone(),
    ));
    tracing::info!("projector started");
    let sink = Sink {
        pool,
        dlq: Some(producer),
        notify: true,
        keys_table: crate::keys::TABLE.to_string(),
    };
    let batching = Batching::from(cfg);
    let mut gate = IdleGate::new(&cfg.kafka, &projected_topics(), cfg.projector.fetch_wait_ms);
    // The next batch is gathered (and librdkafka's queue drained) while the current one is in
    // its transaction, so the process is not idle while Postgres works, nor Postgres while the
    // process decodes. Batches still apply strictly in order, one transaction at a time.
    let mut pending = next_batch(&consumer, &batching, &cancel, None, &mut gate).await;
    while let Some(batch) = pending {
        let applying = async {
            let done = apply_until_done(&sink, &batch, &cancel)
                .instrument(batch_span(&batch))
                .await;
            if done {
                commit_hint(&consumer, &batch);
            }
            done
        };
        let next = next_batch(&consumer, &batching, &cancel, None, &mut gate);
        let (done, next) = tokio::join!(applying, next);
        if !done {
            break;
        }
        pending = next;
    }
    lag_task.abort();
    tracing::info!("projector stopped");
    Ok(())
}

/// Most traces one batch span links to: a batch of thousands of events from one bulk replay
/// would otherwise carry thousands of links.
const MAX_LINKS: usize = 64;

/// One span per applied batch, linked to the traces of the events in it (OpenTelemetry's
/// shape for batch consumers: a batch has many parents, so it links rather than nests).
fn batch_span(batch: &[Delivery]) -> tracing::Span {
    let span = tracing::info_span!("projector.batch", events = batch.len());
    let mut seen = std::collections::HashSet::new();
    for tp in batch.iter().filter_map(|d| d.traceparent.as_deref()) {
        if seen.len() >= MAX_LINKS {
            break;
        }
        if seen.insert(tp) {
            roar_common::trace::add_link(&span, tp);
        }
    }
    span
}

/// A consumer for manual assignment; its group only names it in Kafka's lag tooling.
pub(crate) fn new_consumer(cfg: &Config) -> Result<StreamConsumer, ProjectionError> {
    Ok(consumer_config(&cfg.kafka)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A stored position below the log start (retention) falls back to the oldest event.
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", cfg.projector.fetch_wait_ms.to_string())
        .create()?)
}

/// How batches are cut: at most `size` events, or what arrived within `linger` of the first.
pub(crate) struct Batching {
    pub size: usize,
    pub linger: Duration,
}

impl From<&Config> for Batching {
    fn from(cfg: &Config) -> Self {
        Self {
            size: cfg.projector.batch_size,
            linger: Duration::from_millis(cfg.projector.batch_linger_ms),
        }
    }
}

/// Waits for the next batch; `None` once `cancel` fires, an empty batch if no event came
/// within `idle` (when given). Dropping `recv` early is safe: a message is taken off the queue
/// only when it is returned. `gate` pauses the partitions while nothing comes.
pub(crate) async fn next_batch(
    consumer: &StreamConsumer,
    b: &Batching,
    cancel: &CancellationToken,
    idle: Option<Duration>,
    gate: &mut IdleGate,
) -> Option<Vec<Delivery>> {
    let idle_until = idle.map(|d| tokio::time::Instant::now() + d);
    let first = loop {
        let m = tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = sleep_until(idle_until) => return Some(Vec::new()),
            () = gate.step(consumer) => continue,
            m = consumer.recv() => m,
        };
        match m {
            Ok(m) => break Delivery::from_message(&m),
            Err(e) => {
                tracing::warn!(error = %e, "projector consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    gate.busy();
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + b.linger;
    while batch.len() < b.size {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(Delivery::from_message(&m)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "projector consumer error");
                break;
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Applies `batch`, retrying while the database is away: skipping it would lose events.
/// Returns false if `cancel` fired first (the batch is then not applied; the next start
/// re-reads it from the stored offsets).
pub(crate) async fn apply_until_done(
    sink: &Sink,
    batch: &[Delivery],
    cancel: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        match apply_batch(sink, batch).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "batch not applied; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return false,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Assigns every partition of the projected topics at the position stored in `pool`'s
/// schema, creating a row (position 0) for each partition that has none, so every batch can
/// lock its partitions' rows. Returns the partitions.
pub(crate) async fn assign_from_db(
    consumer: &StreamConsumer,
    kafka: &KafkaConfig,
    pool: &PgPool,
) -> Result<Vec<(String, i32)>, ProjectionError> {
    let all = projected_partitions(kafka).await?;
    offsets::ensure(pool, &all).await?;
    let stored = offsets::stored(pool).await?;
    let mut tpl = TopicPartitionList::new();
    for (t, p) in &all {
        let offset = stored
            .get(&(t.clone(), *p))
            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
        tpl.add_partition_offset(t, *p, offset)?;
    }
    consumer.assign(&tpl)?;
    Ok(all)
}

/// Every partition of the projected topics. The metadata calls block on the network, so they
/// run off the executor, on a client of their own.
async fn projected_partitions(kafka: &KafkaConfig) -> Result<Vec<(String, i32)>, ProjectionError> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = consumer_config(&kafka).create()?;
        let mut all = Vec::new();
        for topic in projected_topics() {
            let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            let partitions: Vec<i32> = md
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                return Err(ProjectionError::Other(format!(
                    "topic {topic} has no partitions (not bootstrapped?)"
                )));
            }
            all.extend(partitions.into_iter().map(|p| (topic.clone(), p)));
        }
        Ok(all)
    })
    .await
    .map_err(|e| ProjectionError::Other(format!("partition lookup: {e}")))?
}

/// Kafka's committed offsets are only a hint for lag dashboards; the truth is in Postgres.
fn commit_hint(consumer: &StreamConsumer, batch: &[Delivery]) {
    let mut last: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for d in batch {
        last.insert((d.topic.as_str(), d.partition), d.offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in last {
        let _ = tpl.add_partition_offset(t, p, Offset::Offset(o));
    }
    let _ = consumer.commit(&tpl, CommitMode::Async);
}
