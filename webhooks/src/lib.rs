//! Outbound webhooks: a user (`POST /webhooks`) or a job (`callback_url`) registers a URL with
//! event filters; the dispatcher (`roar webhooks`, consumer group `roar-webhooks`) records one
//! delivery per matching job event in Postgres before its offset moves, then sends each as a
//! signed request (Standard Webhooks headers, [`sign`]) through the SSRF [`guard`], retrying
//! with exponential backoff and recording every outcome. Signing secrets are kept sealed
//! ([`seal`]): the dispatcher holds the key that opens them. Sending is decoupled from consuming,
//! so a dead endpoint delays only its own deliveries.

use std::sync::Arc;
use std::time::Duration;

use roar_common::config::ConfigError;
use roar_common::kafka::{run_consumer, ConsumerSpec, EventProducer, KafkaError};
use roar_common::metrics::{WEBHOOK_DELIVERIES, WEBHOOK_PENDING};
use roar_common::Config;
use roar_schemas::topics::JOB_EVENTS;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub mod deliver;
pub mod dispatch;
pub mod guard;
pub mod seal;
pub mod sign;
pub mod status;
pub mod store;

/// The dispatcher's consumer group.
pub const GROUP: &str = "roar-webhooks";

/// What stops the dispatcher (none of these is retryable by the caller: fix and restart).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("building the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// No sealing key: the dispatcher could open no secret (`webhooks.secret_key`).
    #[error(transparent)]
    Seal(#[from] seal::SealError),
}

/// Runs the dispatcher until `cancel` fires: the consumer that records deliveries and the
/// sender that makes them.
pub async fn run(
    cfg: &Config,
    pool: PgPool,
    cancel: CancellationToken,
) -> Result<(), WebhookError> {
    let sender = Arc::new(deliver::Sender::new(pool.clone(), &cfg.webhooks)?);
    let producer = EventProducer::new(&cfg.kafka)?;
    let spec = ConsumerSpec {
        group: GROUP.into(),
        topics: vec![JOB_EVENTS.into()],
        kafka: cfg.kafka.clone(),
        fetch_wait_ms: cfg.webhooks.fetch_wait_ms,
    };
    // Zero-valued series from the start, so dashboards see the role before its first webhook.
    for status in status::DeliveryStatus::ALL {
        metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => status.outcome()).increment(0);
    }
    metrics::gauge!(WEBHOOK_PENDING).set(0.0);
    // The sender stops with the consumer, whichever way that ends.
    let stop_sending = cancel.child_token();
    let sending = tokio::spawn(sender.run(stop_sending.clone()));
    tracing::info!("webhook dispatcher started");
    let handler = Arc::new(dispatch::Recorder { pool });
    let result = run_consumer(spec, handler, producer.clone(), cancel).await;
    stop_sending.cancel();
    let _ = sending.await;
    producer.drain(Duration::from_secs(5)).await;
    Ok(result?)
}
