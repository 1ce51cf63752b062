//! `roar projector rebuild`: replays every projected topic from its earliest offset into fresh
//! tables in a side schema, catches up with the live projector, and swaps the fresh tables in
//! with one transaction, so readers see either the old model or the new one, never a half-built
//! one. The live projector keeps running throughout (see docs/ARCHITECTURE.md, "Rebuild"):
//!
//! 1. `roar_rebuild` is created and migrated; a consumer applies every event into it with the
//!    live projector's own batch code (poison events are skipped, not dead-lettered again).
//! 2. Once the rebuild is within one batch of the positions stored with the live model, one
//!    transaction locks the live `projector_offsets` (live batches wait; readers do not), reads
//!    the live positions L, and the rebuild applies events until it holds every event below L.
//! 3. In that same transaction the live tables move to `roar_retired` and the rebuilt ones take
//!    their place. The rebuilt positions are ≥ L, so the waiting live batch resumes against the
//!    new tables and skips what the rebuild already holds: nothing is lost or applied twice.

use std::str::FromStr;
use std::time::{Duration, Instant};

use roar_common::kafka::IdleGate;
use roar_common::Config;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::batch::Sink;
use crate::error::ProjectionError;
use crate::offsets::{self, Positions};
use crate::projector::{apply_until_done, assign_from_db, new_consumer, next_batch, Batching};

/// The schema the rebuild is written into.
pub const REBUILD_SCHEMA: &str = "roar_rebuild";
/// Where the replaced tables are kept until the next rebuild (a manual way back).
pub const RETIRED_SCHEMA: &str = "roar_retired";
/// The read model's tables, moved together.
const TABLES: [&str; 6] = [
    "files",
    "jobs",
    "events",
    "pipelines",
    "pipeline_steps",
    offsets::TABLE,
];
/// How long the final catch-up may hold the live projector before the swap is retried.
const SWAP_CATCH_UP: Duration = Duration::from_secs(30);

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub events: u64,
    pub elapsed: Duration,
    /// How long live batches waited for the swap.
    pub swap_hold: Duration,
}

/// Rebuilds the model behind `live` (its pool's schema) from the topics and swaps it in.
pub async fn rebuild(
    cfg: &Config,
    live: &PgPool,
    cancel: &CancellationToken,
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    let live_schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(live)
        .await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE"))
        .execute(live)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {REBUILD_SCHEMA}"))
        .execute(live)
        .await?;
    let side = schema_pool(cfg, REBUILD_SCHEMA).await?;
    crate::db::migrate(&side).await?;

    let consumer = new_consumer(cfg)?;
    assign_from_db(&consumer, &cfg.kafka, &side).await?;
    let sink = Sink {
        pool: side.clone(),
        dlq: None,
        notify: false,
        // The keys stay in the live schema (never rebuilt): a name opens in the rebuild as it
        // did live, and a deleted file's destroyed key keeps it out of the rebuilt model.
        keys_table: format!("{}.{}", quote(&live_schema), crate::keys::TABLE),
    };
    let batching = Batching::from(cfg);
    let near = cfg.projector.batch_size as i64;
    let mut events = 0u64;
    let idle = Duration::from_millis(200);
    loop {
        // Phase 1: replay until close to the live positions.
        loop {
            if cancel.is_cancelled() {
                return Err(ProjectionError::Canceled);
            }
            if let Some(b) = next_batch_within(&consumer, &batching, cancel, idle).await {
                if !apply_until_done(&sink, &b, cancel).await {
                    return Err(ProjectionError::Canceled);
                }
                events += b.len() as u64;
            }
            if behind(&offsets::stored(live).await?, &side).await? <= near {
                break;
            }
        }
        // Phase 2: hold the live projector, finish, swap.
        let hold = Instant::now();
        let mut tx = live.begin().await?;
        offsets::hold_batches(&mut tx).await?;
        let target = offsets::stored_in_tx(&mut tx).await?;
        let deadline = Instant::now() + SWAP_CATCH_UP;
        let mut caught_up = false;
        while Instant::now() < deadline && !cancel.is_cancelled() {
            if behind(&target, &side).await? == 0 {
                caught_up = true;
                break;
            }
            if let Some(b) = next_batch_within(&consumer, &batching, cancel, idle).await {
                if !apply_until_done(&sink, &b, cancel).await {
                    break;
                }
                events += b.len() as u64;
            }
        }
        if !caught_up {
            tx.rollback().await?;
            if cancel.is_cancelled() {
                return Err(ProjectionError::Canceled);
            }
            tracing::warn!("rebuild could not catch up within the swap window; trying again");
            continue;
        }
        swap(&mut tx, &live_schema).await?;
        tx.commit().await?;
        let swap_hold = hold.elapsed();
        side.close().await;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE"))
            .execute(live)
            .await?;
        tracing::info!(events, ?swap_hold, "read model rebuilt and swapped in");
        return Ok(RebuildReport {
            events,
            elapsed: started.elapsed(),
            swap_hold,
        });
    }
}

/// Moves the live tables out and the rebuilt ones in. Keeps the history's `seq` above every
/// value readers have seen, so an SSE stream resuming from an old id gets repeats, not gaps.
async fn swap(tx: &mut Transaction<'_, Postgres>, live_schema: &str) -> Result<(), sqlx::Error> {
    let live = quote(live_schema);
    let statements = [
        format!(
            "SELECT setval(pg_get_serial_sequence('{REBUILD_SCHEMA}.events', 'seq'),
               GREATEST((SELECT COALESCE(max(seq), 0) FROM {live}.events),
                        (SELECT COALESCE(max(seq), 0) FROM {REBUILD_SCHEMA}.events), 1))"
        ),
        format!("DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"),
        format!("CREATE SCHEMA {RETIRED_SCHEMA}"),
        format!("LOCK TABLE {live}.files, {live}.jobs, {live}.events IN ACCESS EXCLUSIVE MODE"),
    ];
    for s in statements {
        sqlx::query(&s).execute(&mut **tx).await?;
    }
    for t in TABLES {
        sqlx::query(&format!(
            "ALTER TABLE {live}.{t} SET SCHEMA {RETIRED_SCHEMA}"
        ))
        .execute(&mut **tx)
        .await?;
        sqlx::query(&format!(
            "ALTER TABLE {REBUILD_SCHEMA}.{t} SET SCHEMA {live}"
        ))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Removes a deleted file from the tables the last rebuild retired (kept as a manual way
/// back), which would otherwise still hold its rows and name. Nothing to do without them.
pub async fn purge_retired(live: &PgPool, file_id: &str) -> Result<(), sqlx::Error> {
    let retired: Option<String> = sqlx::query_scalar(&format!(
        "SELECT to_regclass('{RETIRED_SCHEMA}.files')::text"
    ))
    .fetch_one(live)
    .await?;
    if retired.is_none() {
        return Ok(());
    }
    for sql in [
        format!(
            "DELETE FROM {RETIRED_SCHEMA}.pipeline_steps WHERE pipeline_id IN
               (SELECT pipeline_id FROM {RETIRED_SCHEMA}.pipelines WHERE file_id = $1)"
        ),
        format!("DELETE FROM {RETIRED_SCHEMA}.pipelines WHERE file_id = $1"),
        format!("DELETE FROM {RETIRED_SCHEMA}.events WHERE file_id = $1"),
        format!("DELETE FROM {RETIRED_SCHEMA}.jobs WHERE file_id = $1"),
        format!("DELETE FROM {RETIRED_SCHEMA}.files WHERE file_id = $1"),
    ] {
        sqlx::query(&sql).bind(file_id).execute(live).await?;
    }
    Ok(())
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A pool whose connections resolve unqualified names in `schema`.
async fn schema_pool(cfg: &Config, schema: &str) -> Result<PgPool, sqlx::Error> {
    let opts =
        PgConnectOptions::from_str(cfg.database.url.expose())?.options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
}

/// The next batch, empty if nothing arrived within `idle`.
async fn next_batch_within(
    consumer: &rdkafka::consumer::StreamConsumer,
    batching: &Batching,
    cancel: &CancellationToken,
    idle: Duration,
) -> Option<Vec<roar_common::kafka::Delivery>> {
    // A rebuild reads until it has caught up and then stops: it never idles long.
    next_batch(
        consumer,
        batching,
        cancel,
        Some(idle),
        &mut IdleGate::disabled(),
    )
    .await
    .filter(|b| !b.is_empty())
}

/// Events below `target` that the rebuild does not hold yet.
async fn behind(target: &Positions, side: &PgPool) -> Result<i64, sqlx::Error> {
    let have = offsets::stored(side).await?;
    Ok(target
        .iter()
        .map(|(k, t)| (t - have.get(k).copied().unwrap_or(0)).max(0))
        .sum())
}
