use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use roar_schemas::topics::TopicSpec;

use super::{client_config, KafkaError};
use crate::config::KafkaConfig;

/// Creates every missing topic in `specs`; existing topics are left as they are. Retries while
/// the broker is still starting, up to `wait`.
pub async fn ensure_topics(
    cfg: &KafkaConfig,
    specs: &[TopicSpec],
    wait: Duration,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let deadline = tokio::time::Instant::now() + wait;
    let retention: Vec<String> = specs.iter().map(|s| s.retention_ms.to_string()).collect();
    let topics: Vec<NewTopic> = specs
        .iter()
        .zip(&retention)
        .map(|(s, r)| {
            NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(cfg.replication),
            )
            .set("retention.ms", r)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    loop {
        let attempt = admin.create_topics(topics.iter(), &opts).await;
        let failure = match attempt {
            Ok(results) => results.into_iter().find_map(|r| match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                Err((topic, code)) => Some((topic, code.to_string())),
            }),
            Err(e) => Some(("*".to_string(), e.to_string())),
        };
        match failure {
            None => {
                tracing::debug!(count = specs.len(), "topics ready");
                return Ok(());
            }
            Some((topic, reason)) if tokio::time::Instant::now() >= deadline => {
                return Err(KafkaError::Bootstrap { topic, reason });
            }
            Some((topic, reason)) => {
                tracing::debug!(%topic, %reason, "topic bootstrap not ready; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}
