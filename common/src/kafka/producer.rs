use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use roar_schemas::Event;

use super::{client_config, KafkaError};
use crate::config::KafkaConfig;
use crate::metrics::EVENTS_PRODUCED;

/// A producer of roar events, idempotent (`enable.idempotence=true`) unless `kafka.idempotence`
/// says otherwise, always `acks=all`. `send` returns only once the broker has acknowledged the
/// event, so callers can treat it as durable.
#[derive(Clone)]
pub struct EventProducer {
    inner: FutureProducer,
}

impl EventProducer {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let mut config = client_config(cfg);
        config
            .set("enable.idempotence", cfg.idempotence.to_string())
            .set("batch.num.messages", cfg.batch_max_messages.to_string())
            .set("acks", "all");
        if !cfg.idempotence {
            // Without sequence numbers, only one request in flight keeps a retried batch from
            // landing behind a later one.
            config.set("max.in.flight.requests.per.connection", "1");
        }
        let inner: FutureProducer = config
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(Self { inner })
    }

    /// Encodes `event` (Avro single-object) and sends it; resolves to (partition, offset). The
    /// envelope's `traceparent` also goes in a Kafka header, for tools that read headers only.
    pub async fn send<E: Event>(
        &self,
        topic: &str,
        key: &str,
        event: &E,
    ) -> Result<(i32, i64), KafkaError> {
        let payload = roar_schemas::encode(event);
        let trace = event.meta().traceparent.as_deref();
        self.send_record(topic, key.as_bytes(), &payload, trace)
            .await
    }

    /// Sends bytes as they are (the DLQ forwards undecodable payloads unchanged).
    pub async fn send_raw(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<(i32, i64), KafkaError> {
        self.send_record(topic, key, payload, None).await
    }

    /// Sends bytes as they are with one Kafka header (a re-driven dead letter names itself).
    pub async fn send_with_header(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        (name, value): (&str, &str),
    ) -> Result<(i32, i64), KafkaError> {
        let headers = OwnedHeaders::new().insert(Header {
            key: name,
            value: Some(value),
        });
        self.send_headers(topic, key, payload, headers).await
    }

    async fn send_record(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        traceparent: Option<&str>,
    ) -> Result<(i32, i64), KafkaError> {
        let mut headers = OwnedHeaders::new();
        if let Some(tp) = traceparent {
            headers = headers.insert(Header {
                key: crate::trace::HEADER,
                value: Some(tp),
            });
        }
        self.send_headers(topic, key, payload, headers).await
    }

    async fn send_headers(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(i32, i64), KafkaError> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        match self.inner.send(record, Duration::from_secs(30)).await {
            Ok(delivery) => {
                metrics::counter!(EVENTS_PRODUCED, "topic" => topic.to_string()).increment(1);
                // The broker has it: this process's idle consumers of the topic may fetch.
                super::produced(topic);
                Ok(delivery)
            }
            Err((e, _)) => Err(KafkaError::Delivery {
                topic: topic.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Waits for in-flight messages (shutdown), blocking the calling thread: for code that is
    /// not on the async executor (the CLI's one-shot commands).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.inner.flush(timeout);
    }

    /// Waits for in-flight messages (shutdown) on a blocking thread: librdkafka's flush blocks
    /// for up to `timeout`, which on the executor would stall every other task of the process
    /// (the consumers still committing, the HTTP server still draining).
    pub async fn drain(&self, timeout: Duration) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.flush(timeout)).await;
    }
}
