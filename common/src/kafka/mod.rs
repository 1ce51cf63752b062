//! Kafka plumbing on rdkafka: an idempotent producer of roar events, topic bootstrap, and an
//! at-least-once consumer loop (decode → act → make durable → store offset) that keeps polling
//! while a long handler runs and sends poison messages to the dead-letter topic, and what
//! operations watch on the broker (reachability, consumer-group lag, topic depth).

mod admin;
mod consumer;
mod control;
pub mod dlq;
mod idle;
mod producer;
mod rebalance;
mod watch;

pub use admin::ensure_topics;
pub use consumer::{run_consumer, send_dead_letter, ConsumerSpec, Delivery, HandleError, Handler};
pub use control::{ControlFollower, LiveWorker, RunningGuard};
pub use idle::{produced, IdleGate};
pub use producer::EventProducer;
pub use watch::BrokerWatch;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Errors talking to the broker. Most are transient.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("kafka: delivery of event to {topic} failed: {reason}")]
    Delivery { topic: String, reason: String },
    #[error("kafka: reading {topic} failed: {reason}")]
    Read { topic: String, reason: String },
    #[error("kafka: topic bootstrap failed for {topic}: {reason}")]
    Bootstrap { topic: String, reason: String },
    #[error("kafka consumer {group} stopped: {reason}")]
    Fatal { group: String, reason: String },
}

impl KafkaError {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, KafkaError::Fatal { .. })
    }
}

/// The client settings every roar Kafka client shares.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", format!("roar-{}", std::process::id()))
        // Loopback and single-broker dev setups answer fast; fail over sooner than the default.
        .set("socket.keepalive.enable", "true")
        .set("log_level", "4");
    cfg.security.apply(&mut c);
    c
}

/// [`client_config`] for a consumer (anything that fetches or lists offsets). Consumers read
/// uncommitted: roar writes no Kafka transactions, so both isolation levels deliver the same
/// records (the last stable offset is the high watermark), and tansu's PostgreSQL engine, which
/// `roar dev` runs on, cannot answer a read-committed ListOffsets on PostgreSQL 15 (its query
/// needs 16's syntax; the broker drops the connection instead).
pub fn consumer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = client_config(cfg);
    c.set("isolation.level", "read_uncommitted");
    c
}
