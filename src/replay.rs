//! `roar projector rebuild` and `roar replay`: thin wrappers that connect, call the projections
//! crate (rebuild) or the orchestrator's replay command, and print what happened.

use std::time::Duration;

use anyhow::{Context, Result};
use roar_common::kafka::EventProducer;
use roar_common::Config;
use roar_orchestrator::commands::replay::{ReplayReport, ReplaySpec};
use roar_projections::ReadModel;
use tokio_util::sync::CancellationToken;

use crate::services;

async fn live_pool(cfg: &Config) -> Result<sqlx::PgPool> {
    let pool = roar_projections::connect(cfg.database.url.expose(), 4, Duration::from_secs(30))
        .await
        .context("connecting to the read-model database (database.url)")?;
    roar_projections::migrate(&pool)
        .await
        .context("migrating the read model")?;
    Ok(pool)
}

/// Rebuilds the read model from the topics and swaps it in; a running projector may stay up.
pub async fn rebuild(cfg: &Config, cancel: CancellationToken) -> Result<()> {
    services::bootstrap_topics(cfg).await?;
    let pool = live_pool(cfg).await?;
    let r = roar_projections::rebuild(cfg, &pool, &cancel).await?;
    println!(
        "read model rebuilt from {} events in {:.1} s and swapped in (live batches held {} ms); \
         the previous tables are in schema {}",
        r.events,
        r.elapsed.as_secs_f64(),
        r.swap_hold.as_millis(),
        roar_projections::RETIRED_SCHEMA,
    );
    Ok(())
}

/// Re-requests a model's jobs; prints one line per new job and a summary.
pub async fn replay(cfg: &Config, spec: ReplaySpec) -> Result<ReplayReport> {
    services::bootstrap_topics(cfg).await?;
    let read = ReadModel::new(live_pool(cfg).await?);
    let producer = EventProducer::new(&cfg.kafka)?;
    let storage = roar_common::storage::Storage::from_config(&cfg.storage)?;
    let report =
        roar_orchestrator::commands::replay::replay(&read, &producer, &storage, &spec).await?;
    producer.drain(Duration::from_secs(5)).await;
    for (file_id, job_id) in &report.requested {
        println!("requested {job_id} for {file_id}");
    }
    for (job_id, why) in &report.refused {
        eprintln!("not replayed: {job_id}: {why}");
    }
    println!(
        "{} jobs requested, {} already existed, {} refused (request id {})",
        report.requested.len(),
        report.existing,
        report.refused.len(),
        report.request_id
    );
    Ok(report)
}
