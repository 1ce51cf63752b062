//! The at-least-once consumer loop shared by every roar consumer group.
//!
//! For each message: decode → act → make durable → store offset. The offset of a message is
//! stored only after its handler returned `Ok` (its side effect is durable) or after the message
//! is safely in the dead-letter topic, so a crash redelivers rather than loses. The loop keeps
//! polling while a handler runs, pausing the assigned partitions once a message arrives
//! meanwhile, so a job that runs for an hour never trips `max.poll.interval.ms` and the member
//! keeps its partitions. A member idle for `kafka.idle_pause_ms` pauses its partitions until
//! this process produces to its topics or its next peek ([`super::idle`]).
//!
//! Rebalances: a message fetched for a partition this member has since lost is dropped, not
//! processed (its new owner reads it from the committed offset), and an offset of a lost
//! partition is never stored or committed, so it cannot move the new owner's position
//! ([`super::rebalance`]). A retryable failure during shutdown is abandoned, not dead-lettered:
//! the next owner tries the message again.
//!
//! A dead letter ends what its message started: once the message is in the DLQ, the
//! handler's [`Handler::dead_lettered`] emits the terminal event (a failed job, a failed
//! probe) before the offset moves, so a user never waits on a message nobody will handle. A
//! handler that panics is such a case too (kind `panicked`): the loop goes on with the next
//! message.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use roar_schemas::{DeadLetter, DeadLetterKind, Event, EventMeta};
use tokio_util::sync::CancellationToken;

use super::idle::IdleGate;
use super::rebalance::LoopContext;
use super::{consumer_config, EventProducer, KafkaError};
use crate::config::KafkaConfig;
use crate::metrics::{DLQ_MESSAGES, HANDLER_RETRIES, MESSAGES_CONSUMED};

/// A message taken off a topic, owned so that it can outlive the poll that returned it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Broker or producer timestamp, ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The `traceparent` Kafka header, if the producer set one.
    pub traceparent: Option<String>,
}

impl Delivery {
    pub fn from_message<M: Message>(m: &M) -> Self {
        Self {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            traceparent: traceparent_header(m),
        }
    }

    /// Decodes the payload; an undecodable payload is poison.
    pub fn decode<E: Event>(&self) -> Result<E, HandleError> {
        let bytes = self
            .payload
            .as_deref()
            .ok_or_else(|| HandleError::poison(DeadLetterKind::Undecodable, "empty payload"))?;
        roar_schemas::decode(bytes)
            .map_err(|e| HandleError::poison(DeadLetterKind::Undecodable, e.to_string()))
    }

    pub fn key_str(&self) -> String {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default()
    }
}

fn traceparent_header<M: Message>(m: &M) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == crate::trace::HEADER)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string)
}

/// How a handler failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandleError {
    /// Can never succeed (undecodable, breaks a rule): the message goes to the DLQ and the
    /// partition moves on.
    #[error("{kind}: {reason}")]
    Poison {
        kind: DeadLetterKind,
        reason: String,
    },
    /// May succeed later (storage or broker hiccup): the same message is tried again.
    #[error("retryable: {0}")]
    Retry(String),
    /// The handler stopped because the process is shutting down: the offset is not stored, so
    /// another member redoes the message.
    #[error("abandoned at shutdown")]
    Abandoned,
}

impl HandleError {
    pub fn poison(kind: DeadLetterKind, reason: impl Into<String>) -> Self {
        HandleError::Poison {
            kind,
            reason: reason.into(),
        }
    }
}

/// Acts on one message. `Ok` promises the side effect is durable.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(
        &self,
        delivery: &Delivery,
        cancel: &CancellationToken,
    ) -> Result<(), HandleError>;

    /// Called once `delivery` is safely in the dead-letter topic, before its offset is stored.
    /// A handler whose messages start something a user waits on (a job, a probe) ends it here
    /// with the cause, so nothing stays queued or running forever behind a dead letter. A
    /// retryable error is tried again (with backoff) until shutdown; then the offset is not
    /// stored and the next owner handles the message again.
    async fn dead_lettered(
        &self,
        _delivery: &Delivery,
        _kind: DeadLetterKind,
        _reason: &str,
    ) -> Result<(), HandleError> {
        Ok(())
    }
}

/// What to consume and as whom.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub group: String,
    pub topics: Vec<String>,
    pub kafka: KafkaConfig,
    /// librdkafka's `fetch.wait.max.ms`: the longest a message on an idle topic waits before
    /// this member sees it (from the role's `*.fetch_wait_ms` knob).
    pub fetch_wait_ms: u64,
}

/// Runs the loop until `cancel` fires, then waits for the running handler, commits the stored
/// offsets and returns.
pub async fn run_consumer(
    spec: ConsumerSpec,
    handler: Arc<dyn Handler>,
    producer: EventProducer,
    cancel: CancellationToken,
) -> Result<(), KafkaError> {
    let consumer: StreamConsumer<LoopContext> = consumer_config(&spec.kafka)
        .set("group.id", &spec.group)
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            spec.kafka.commit_interval_ms.to_string(),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            spec.kafka.session_timeout_ms.to_string(),
        )
        .set(
            "max.poll.interval.ms",
            spec.kafka.max_poll_interval_ms.to_string(),
        )
        .set("fetch.wait.max.ms", spec.fetch_wait_ms.to_string())
        .create_with_context(LoopContext::default())?;
    let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(group = %spec.group, topics = ?spec.topics, "consumer started");

    let ctx = consumer.context().clone();
    let mut idle = IdleGate::new(&spec.kafka, &spec.topics, spec.fetch_wait_ms);
    let mut buffered: Buffer = VecDeque::new();
    // Offset to commit per partition, with the generation it was stored at.
    let mut stored: HashMap<(String, i32), (i64, u64)> = HashMap::new();
    loop {
        let (tag, delivery) = match buffered.pop_front() {
            Some((tag, d)) if ctx.revoked_since(&d.topic, d.partition, tag) => {
                tracing::debug!(topic = %d.topic, partition = d.partition, offset = d.offset, "partition revoked; buffered message dropped");
                continue;
            }
            Some(d) => d,
            None => tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                m = consumer.recv() => match m {
                    Ok(m) => (ctx.generation(), Delivery::from_message(&m)),
                    Err(e) => {
                        tracing::warn!(group = %spec.group, error = %e, "consumer error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
                () = idle.step(&consumer) => {
                    idle.rebalanced(ctx.generation());
                    continue;
                }
            },
        };

        idle.busy();
        let outcome = handle_with_retries(
            &spec,
            &consumer,
            &*handler,
            &delivery,
            &mut buffered,
            &cancel,
        )
        .await;
        if ctx.revoked_since(&delivery.topic, delivery.partition, tag) {
            // Lost while the handler ran: the new owner redoes the message (a dead letter or
            // an offset from here would duplicate or move its work).
            tracing::info!(topic = %delivery.topic, partition = delivery.partition, offset = delivery.offset, "partition revoked while handling; offset left to the new owner");
            if cancel.is_cancelled() {
                break;
            }
            continue;
        }
        let store = match outcome {
            Ok(()) => {
                metrics::counter!(MESSAGES_CONSUMED, "topic" => delivery.topic.clone(), "group" => spec.group.clone(), "outcome" => "ok").increment(1);
                true
            }
            Err(HandleError::Poison { kind, reason }) => {
                send_to_dlq(&spec.group, &producer, &delivery, kind, &reason, &cancel).await
                    && settle(&spec.group, &*handler, &delivery, kind, &reason, &cancel).await
            }
            Err(HandleError::Retry(reason)) => {
                let kind = DeadLetterKind::Failed;
                send_to_dlq(&spec.group, &producer, &delivery, kind, &reason, &cancel).await
                    && settle(&spec.group, &*handler, &delivery, kind, &reason, &cancel).await
            }
            Err(HandleError::Abandoned) => false,
        };
        if !store {
            // Shutting down mid-message: leave its offset (and everything after it) for the
            // next owner of the partition.
            break;
        }
        // Nothing in an iteration returns early: the final commit below always runs.
        let mut tpl = TopicPartitionList::new();
        let stored_now = tpl
            .add_partition_offset(
                &delivery.topic,
                delivery.partition,
                Offset::Offset(delivery.offset + 1),
            )
            .and_then(|()| consumer.store_offsets(&tpl));
        match stored_now {
            Ok(()) => {
                stored.insert(
                    (delivery.topic.clone(), delivery.partition),
                    (delivery.offset + 1, ctx.generation()),
                );
            }
            // The partition was revoked while we worked; its new owner redoes the message.
            Err(e) => {
                tracing::debug!(error = %e, topic = %delivery.topic, partition = delivery.partition, "offset not stored")
            }
        }
        idle.rebalanced(ctx.generation());
        idle.busy();
        if cancel.is_cancelled() {
            break;
        }
    }

    // Final, synchronous commit of exactly what was stored, for the partitions still ours, so
    // a failure is logged here. A loop that never gets here (the task aborted) is covered by
    // the consumer's close on drop: with auto-commit on, librdkafka commits the stored offsets
    // then (it refuses to store any for a partition this member no longer holds).
    stored.retain(|(topic, partition), (_, tag)| !ctx.revoked_since(topic, *partition, *tag));
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), (offset, _)) in &stored {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    // The commit waits for the broker and dropping the consumer leaves its group (another round
    // trip): both block, so they run on a blocking thread, not on the executor other tasks share.
    let group = spec.group.clone();
    let closed = tokio::task::spawn_blocking(move || {
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(group = %group, error = %e, "final commit failed; messages may be redelivered");
            }
        }
        drop(consumer);
    })
    .await;
    if let Err(e) = closed {
        tracing::warn!(group = %spec.group, error = %e, "closing the consumer failed");
    }
    tracing::info!(group = %spec.group, "consumer stopped");
    Ok(())
}

/// Messages fetched while a handler ran, in order, each with the rebalance generation it was
/// received at.
type Buffer = VecDeque<(u64, Delivery)>;

/// Runs the handler, polling all the while; retries retryable failures with exponential
/// backoff up to `max_handler_attempts`. A retryable failure once shutdown has begun is
/// `Abandoned`: it says nothing about the message, so it must not reach the DLQ.
async fn handle_with_retries(
    spec: &ConsumerSpec,
    consumer: &StreamConsumer<LoopContext>,
    handler: &dyn Handler,
    delivery: &Delivery,
    buffered: &mut Buffer,
    cancel: &CancellationToken,
) -> Result<(), HandleError> {
    let mut paused = false;
    let mut attempt = 0u32;
    let result = loop {
        attempt += 1;
        let work = contain_panic(handler.handle(delivery, cancel));
        let result = poll_while(consumer, buffered, &mut paused, work).await;
        match result {
            Err(HandleError::Retry(reason))
                if attempt < spec.kafka.max_handler_attempts && !cancel.is_cancelled() =>
            {
                metrics::counter!(HANDLER_RETRIES, "group" => spec.group.clone()).increment(1);
                let backoff = Duration::from_millis(200u64.saturating_mul(1 << attempt.min(6)));
                tracing::warn!(group = %spec.group, topic = %delivery.topic, partition = delivery.partition, offset = delivery.offset, attempt, %reason, "handler failed; retrying");
                let sleep = async {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = cancel.cancelled() => {}
                    }
                    Ok::<(), HandleError>(())
                };
                let _ = poll_while(consumer, buffered, &mut paused, sleep).await;
                if cancel.is_cancelled() {
                    break Err(HandleError::Abandoned);
                }
            }
            Err(HandleError::Retry(reason)) if cancel.is_cancelled() => {
                tracing::info!(group = %spec.group, topic = %delivery.topic, partition = delivery.partition, offset = delivery.offset, %reason, "retryable failure during shutdown; left for the next owner");
                break Err(HandleError::Abandoned);
            }
            other => break other,
        }
    };
    if paused {
        if let Ok(assignment) = consumer.assignment() {
            let _ = consumer.resume(&assignment);
        }
    }
    result
}

/// Turns a panic in a handler into a dead letter of kind `Panicked`, so a bug on one message
/// ends that message's work (the DLQ, then its terminal event) instead of the whole loop: a
/// crashed loop would be restarted onto the same message and crash again, blocking the
/// partition for everyone behind it.
async fn contain_panic<F>(work: F) -> Result<(), HandleError>
where
    F: std::future::Future<Output = Result<(), HandleError>>,
{
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic payload".into());
            tracing::error!(panic = %what, "handler panicked; the message goes to the dead-letter topic");
            Err(HandleError::poison(
                DeadLetterKind::Panicked,
                format!("handler panicked: {what}"),
            ))
        }
    }
}

/// Drives `work` to completion while polling the consumer, so the member stays in its group
/// however long the work takes. The first message that arrives meanwhile pauses the
/// assignment (pausing only then keeps quick handlers at full fetch speed: a pause/resume per
/// message would cost a fetch round trip each); it and anything already fetched are kept, in
/// order, for after the current message.
async fn poll_while<F>(
    consumer: &StreamConsumer<LoopContext>,
    buffered: &mut Buffer,
    paused: &mut bool,
    work: F,
) -> Result<(), HandleError>
where
    F: std::future::Future<Output = Result<(), HandleError>>,
{
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            r = &mut work => return r,
            m = consumer.recv() => {
                if let Ok(m) = m {
                    let tag = consumer.context().generation();
                    buffered.push_back((tag, Delivery::from_message(&m)));
                    if !*paused {
                        if let Ok(assignment) = consumer.assignment() {
                            *paused = consumer.pause(&assignment).is_ok();
                        }
                    }
                }
            }
        }
    }
}

/// Returns whether the message is safely in the DLQ (and its offset may be stored).
async fn send_to_dlq(
    group: &str,
    producer: &EventProducer,
    d: &Delivery,
    kind: DeadLetterKind,
    reason: &str,
    cancel: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(200);
    loop {
        match send_dead_letter(producer, group, d, kind, reason).await {
            Ok(_) => {
                metrics::counter!(DLQ_MESSAGES, "topic" => d.topic.clone(), "kind" => kind.as_str())
                    .increment(1);
                return true;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write to the dead-letter topic; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return false,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Lets the handler end what a dead-lettered message started; returns whether that is done
/// (or nothing is left to do), so the offset may be stored.
async fn settle(
    group: &str,
    handler: &dyn Handler,
    d: &Delivery,
    kind: DeadLetterKind,
    reason: &str,
    cancel: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(200);
    loop {
        match handler.dead_lettered(d, kind, reason).await {
            Ok(()) => return true,
            Err(HandleError::Retry(e)) => {
                tracing::warn!(%group, topic = %d.topic, partition = d.partition, offset = d.offset, error = %e, "cannot end the dead-lettered message's work yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return false,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(HandleError::Abandoned) => return false,
            Err(e @ HandleError::Poison { .. }) => {
                tracing::warn!(%group, topic = %d.topic, partition = d.partition, offset = d.offset, error = %e, "the dead-lettered message names nothing to end");
                return true;
            }
        }
    }
}

/// Writes one message to the dead-letter topic with where it came from and why (one attempt).
pub async fn send_dead_letter(
    producer: &EventProducer,
    group: &str,
    d: &Delivery,
    kind: DeadLetterKind,
    reason: &str,
) -> Result<(), KafkaError> {
    tracing::warn!(%group, topic = %d.topic, partition = d.partition, offset = d.offset, kind = kind.as_str(), %reason, "sending message to the dead-letter topic");
    let letter = DeadLetter {
        meta: EventMeta::new(
            format!("dlq-{}-{}-{}", d.topic, d.partition, d.offset),
            format!("service:{group}"),
        ),
        source_topic: d.topic.clone(),
        source_partition: d.partition,
        source_offset: d.offset,
        consumer_group: group.to_string(),
        key: d.key.clone(),
        payload: d.payload.clone(),
        error_kind: kind.as_str().to_string(),
        error: reason.to_string(),
    };
    producer
        .send(roar_schemas::topics::DLQ, &d.key_str(), &letter)
        .await
        .map(|_| ())
}
