//! Projection lag: how many events the topics hold beyond the positions stored with the read
//! model, and how old the newest applied event was when it became visible.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use roar_common::config::KafkaConfig;
use roar_common::kafka::consumer_config;
use roar_common::metrics::{PROJECTOR_LAG_EVENTS, PROJECTOR_LAG_SECONDS};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::ProjectionError;
use crate::event::projected_topics;
use crate::offsets;

/// How often the lag gauges are refreshed.
const EVERY: Duration = Duration::from_secs(5);

/// Events on the projected topics not yet applied to the model behind `pool`: the sum over
/// partitions of (high watermark − stored position).
pub async fn events_behind(kafka: &KafkaConfig, pool: &PgPool) -> Result<u64, ProjectionError> {
    let stored = offsets::stored(pool).await?;
    let kafka = kafka.clone();
    // Watermark and metadata calls block on the network: keep them off the executor.
    let highs = tokio::task::spawn_blocking(move || -> Result<Vec<_>, ProjectionError> {
        let consumer: BaseConsumer = consumer_config(&kafka).create()?;
        let mut out = Vec::new();
        for topic in projected_topics() {
            let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
            for p in md.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) =
                    consumer.fetch_watermarks(&topic, p.id(), Duration::from_secs(5))?;
                out.push((topic.clone(), p.id(), high));
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| ProjectionError::Other(format!("lag probe: {e}")))??;
    Ok(highs
        .into_iter()
        .map(|(t, p, high)| {
            let at = stored.get(&(t, p)).copied().unwrap_or(0);
            (high - at).max(0) as u64
        })
        .sum())
}

/// Refreshes the lag gauges until `cancel` fires. When nothing is behind, the seconds gauge
/// drops to 0 (it is otherwise set by each batch to the age of its newest event).
pub(crate) async fn report_loop(kafka: KafkaConfig, pool: PgPool, cancel: CancellationToken) {
    loop {
        match events_behind(&kafka, &pool).await {
            Ok(n) => {
                metrics::gauge!(PROJECTOR_LAG_EVENTS).set(n as f64);
                if n == 0 {
                    metrics::gauge!(PROJECTOR_LAG_SECONDS).set(0.0);
                }
            }
            Err(e) => tracing::debug!(error = %e, "projection lag probe failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = cancel.cancelled() => return,
        }
    }
}
