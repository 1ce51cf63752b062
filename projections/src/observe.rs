//! What the projector watches of the whole pipeline, for dashboards and alerts: the jobs each
//! model has queued (read model), every consumer group's lag on its topic (a replayed version's
//! group included) and the dead-letter topic's depth (broker). The projector runs as one replica that is always up, so these series
//! exist even while a model's workers are scaled to zero, which is when they matter.

use std::collections::BTreeSet;
use std::time::Duration;

use roar_common::config::KafkaConfig;
use roar_common::kafka::BrokerWatch;
use roar_common::metrics::{CONSUMER_LAG, DLQ_DEPTH, QUEUE_DEPTH};
use roar_schemas::topics::{
    consumer_group, jobs_topic, version_group, DLQ, FILES, JOB_EVENTS, MODELS, PIPELINES,
};
use roar_schemas::JobStatus;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often the gauges are refreshed (Prometheus scrapes every 15 s by default).
const EVERY: Duration = Duration::from_secs(10);

/// The consumer groups whose lag is reported, each with the topic it consumes. A new
/// consumer role adds its (group, topic) here.
pub fn watched_groups() -> Vec<(String, String)> {
    let mut v = vec![(consumer_group("probe"), FILES.to_string())];
    // A model's workers form one group per (variation, version) they serve: the catalogue's
    // versions are the ones jobs ask for unless a replay names another.
    for m in roar_common::catalog::models() {
        for var in &m.variations {
            v.push((
                version_group(m.name, var.name, var.model_version),
                jobs_topic(m.name),
            ));
        }
    }
    // The pipelines' process manager reads two topics; a lag on either delays hand-offs.
    for topic in [PIPELINES, JOB_EVENTS] {
        v.push((crate::pipeline::GROUP.to_string(), topic.to_string()));
    }
    // The webhook dispatcher (`roar_webhooks::GROUP`; that crate does not build on this one).
    v.push(("roar-webhooks".to_string(), JOB_EVENTS.to_string()));
    v
}

/// The (group, topic) of every version group that jobs now wait for or run in and that
/// [`watched_groups`] does not name: the group of a version a replay asked for
/// (`roar replay --model-version`). Its lag counts what that version's workers have left to
/// read; a group no worker has formed yet counts the whole topic, which its first worker reads.
pub async fn replayed_groups(pool: &PgPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT DISTINCT model, variation, model_version FROM jobs WHERE status IN ($1, $2)",
    )
    .bind(JobStatus::Queued.as_str())
    .bind(JobStatus::Running.as_str())
    .fetch_all(pool)
    .await?;
    let known = watched_groups();
    let mut out: Vec<(String, String)> = rows
        .into_iter()
        .map(|(model, variation, version)| {
            (
                version_group(&model, &variation, &version),
                jobs_topic(&model),
            )
        })
        .filter(|pair| !known.contains(pair))
        .collect();
    out.sort();
    Ok(out)
}

/// Jobs per model in status `queued`, every model present (0 when it has none).
pub async fn queued_per_model(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT model, count(*) FROM jobs WHERE status = $1 GROUP BY model")
            .bind(JobStatus::Queued.as_str())
            .fetch_all(pool)
            .await?;
    let mut out: Vec<(String, i64)> = MODELS.iter().map(|m| (m.to_string(), 0)).collect();
    for (model, n) in rows {
        match out.iter_mut().find(|(m, _)| *m == model) {
            Some(slot) => slot.1 = n,
            None => out.push((model, n)),
        }
    }
    Ok(out)
}

/// Refreshes the gauges until `cancel` fires. A failed round is logged and retried on the next
/// tick; the gauges keep their last values meanwhile.
pub async fn report_loop(kafka: KafkaConfig, pool: PgPool, cancel: CancellationToken) {
    let mut watch = None;
    // Replayed versions' groups seen so far: still reported once their jobs are done, so the
    // gauge falls to 0 instead of keeping its last value.
    let mut replayed: BTreeSet<(String, String)> = BTreeSet::new();
    loop {
        match replayed_groups(&pool).await {
            Ok(groups) => replayed.extend(groups),
            Err(e) => tracing::debug!(error = %e, "replayed versions not read"),
        }
        match queued_per_model(&pool).await {
            Ok(rows) => {
                for (model, n) in rows {
                    metrics::gauge!(QUEUE_DEPTH, "model" => model).set(n as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "queue depth not read"),
        }
        let taken = watch.take();
        let kafka_cfg = kafka.clone();
        let mut groups = watched_groups();
        groups.extend(replayed.iter().cloned());
        // Broker calls block: off the executor, with the clients moved in and back out.
        let round = tokio::task::spawn_blocking(move || {
            let mut w = match taken {
                Some(w) => w,
                None => BrokerWatch::new(&kafka_cfg, Duration::from_secs(5))?,
            };
            for (group, topic) in groups {
                match w.group_lag(&group, &topic) {
                    Ok(lag) => metrics::gauge!(CONSUMER_LAG, "group" => group, "topic" => topic)
                        .set(lag as f64),
                    Err(e) => tracing::debug!(%group, error = %e, "consumer lag not read"),
                }
            }
            match w.depth(DLQ) {
                Ok(n) => metrics::gauge!(DLQ_DEPTH).set(n as f64),
                Err(e) => tracing::debug!(error = %e, "dead-letter depth not read"),
            }
            Ok::<_, roar_common::kafka::KafkaError>(w)
        })
        .await;
        match round {
            Ok(Ok(w)) => watch = Some(w),
            Ok(Err(e)) => tracing::debug!(error = %e, "broker watch not created"),
            Err(e) => tracing::warn!(error = %e, "broker watch task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = cancel.cancelled() => return,
        }
    }
}
