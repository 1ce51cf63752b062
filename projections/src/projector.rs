//! The projector loop: manual partition assignment from offsets kept in Postgres, batches applied
//! in one transaction together with those offsets, poison events to the dead-letter topic.
//!
//! Why manual assignment rather than a consumer group: the start position must come from the
//! database, atomically with the rows, and a rebalance callback cannot run an async query.
//! Several projectors may still run at once (rolling deploys): each transaction locks the
//! partitions' offset rows and skips events at or below the stored position, so a second
//! instance never applies an event twice.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use roar_common::kafka::{client_config, send_dead_letter, Delivery, EventProducer};
use roar_common::metrics::{PROJECTOR_BATCH_SECONDS, PROJECTOR_EVENTS, PROJECTOR_LAG_SECONDS};
use roar_common::Config;
use roar_schemas::topics::{jobs_topic, FILES, JOB_EVENTS, MODELS};
use roar_schemas::{FileEvent, JobEvent, JobRequested};
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::apply::{apply_file, apply_job, queued_from_request, FileRow, JobRow};
use crate::NOTIFY_CHANNEL;

const GROUP: &str = "roar-projector";

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("projector database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("projector kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("projector: {0}")]
    Other(String),
}

impl ProjectionError {
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// Runs the projector until `cancel` fires.
pub async fn run(
    cfg: &Config,
    pool: PgPool,
    producer: EventProducer,
    cancel: CancellationToken,
) -> Result<(), ProjectionError> {
    let consumer: StreamConsumer = client_config(&cfg.kafka)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    assign_from_db(&consumer, &pool).await?;
    tracing::info!("projector started");

    let batch_size = cfg.projector.batch_size;
    let linger = Duration::from_millis(cfg.projector.batch_linger_ms);
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            m = consumer.recv() => m,
        };
        let first = match first {
            Ok(m) => Delivery::from_message(&m),
            Err(e) => {
                tracing::warn!(error = %e, "projector consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < batch_size {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(Delivery::from_message(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "projector consumer error");
                    break;
                }
                Err(_) => break,
            }
        }
        // A database outage must not skip events: retry the same batch until it lands.
        let mut backoff = Duration::from_millis(100);
        loop {
            match apply_batch(&pool, &producer, &batch).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, events = batch.len(), "batch not applied; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = cancel.cancelled() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        commit_hint(&consumer, &batch);
    }
    tracing::info!("projector stopped");
    Ok(())
}

/// Assigns every partition of the projected topics at the position stored in Postgres.
async fn assign_from_db(consumer: &StreamConsumer, pool: &PgPool) -> Result<(), ProjectionError> {
    let stored: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, partition, next_offset FROM projector_offsets")
            .fetch_all(pool)
            .await?;
    let stored: HashMap<(String, i32), i64> =
        stored.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
    let mut tpl = TopicPartitionList::new();
    for topic in projected_topics() {
        let topic = topic.as_str();
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
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
        for p in partitions {
            let offset = stored
                .get(&(topic.to_string(), p))
                .map_or(Offset::Beginning, |o| Offset::Offset(*o));
            tpl.add_partition_offset(topic, p, offset)?;
        }
    }
    consumer.assign(&tpl)?;
    Ok(())
}

/// The files and job-event topics, and every model's job topic: a `JobRequested` is what makes
/// a job `queued`, so the orchestrator writes one event per request and never two.
pub fn projected_topics() -> Vec<String> {
    let mut t = vec![FILES.to_string(), JOB_EVENTS.to_string()];
    t.extend(MODELS.iter().map(|m| jobs_topic(m)));
    t
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

enum Decoded {
    File(FileEvent),
    Job(JobEvent),
}

/// Applies a batch in one transaction with its offsets. If a row breaks a database constraint,
/// the batch is re-applied one event per transaction so the culprit alone goes to the DLQ.
pub(crate) async fn apply_batch(
    pool: &PgPool,
    producer: &EventProducer,
    batch: &[Delivery],
) -> Result<(), ProjectionError> {
    let started = Instant::now();
    match apply_in_tx(pool, producer, batch).await {
        Err(ProjectionError::Db(sqlx::Error::Database(e))) if batch.len() > 1 => {
            tracing::warn!(error = %e, "batch violates a constraint; applying one by one");
            for d in batch {
                match apply_in_tx(pool, producer, std::slice::from_ref(d)).await {
                    Err(ProjectionError::Db(sqlx::Error::Database(e))) => {
                        dead_letter(producer, d, "invalid", &e.to_string()).await?;
                        skip_in_tx(pool, d).await?;
                    }
                    other => other?,
                }
            }
        }
        Err(ProjectionError::Db(sqlx::Error::Database(e))) => {
            let d = &batch[0];
            dead_letter(producer, d, "invalid", &e.to_string()).await?;
            skip_in_tx(pool, d).await?;
        }
        other => other?,
    }
    metrics::histogram!(PROJECTOR_BATCH_SECONDS).record(started.elapsed().as_secs_f64());
    Ok(())
}

async fn apply_in_tx(
    pool: &PgPool,
    producer: &EventProducer,
    batch: &[Delivery],
) -> Result<(), ProjectionError> {
    let mut tx = pool.begin().await?;
    let fresh = lock_and_filter(&mut tx, batch).await?;

    let mut files: HashMap<String, Option<FileRow>> = HashMap::new();
    let mut jobs: HashMap<String, Option<JobRow>> = HashMap::new();
    let mut decoded = Vec::with_capacity(fresh.len());
    for d in fresh {
        let ev = if d.topic == FILES {
            d.decode::<FileEvent>().map(Decoded::File)
        } else if d.topic == JOB_EVENTS {
            d.decode::<JobEvent>().map(Decoded::Job)
        } else {
            d.decode::<JobRequested>()
                .map(|r| Decoded::Job(queued_from_request(&r)))
        };
        match ev {
            Ok(Decoded::File(e)) => {
                files.entry(e.file_id.clone()).or_default();
                decoded.push((d, Decoded::File(e)));
            }
            Ok(Decoded::Job(e)) => {
                jobs.entry(e.job_id.clone()).or_default();
                decoded.push((d, Decoded::Job(e)));
            }
            Err(e) => dead_letter(producer, d, "undecodable", &e.to_string()).await?,
        }
    }
    load_rows(&mut tx, &mut files, &mut jobs).await?;

    let mut history = History::default();
    let mut newest = None;
    for (d, ev) in decoded {
        let applied = match &ev {
            Decoded::File(e) => {
                let slot = files.get_mut(&e.file_id).expect("loaded above");
                apply_file(slot.clone(), e).map(|row| *slot = Some(row))
            }
            Decoded::Job(e) => {
                let slot = jobs.get_mut(&e.job_id).expect("loaded above");
                apply_job(slot.clone(), e).map(|row| *slot = Some(row))
            }
        };
        match applied {
            Ok(()) => {
                let meta = match &ev {
                    Decoded::File(e) => &e.meta,
                    Decoded::Job(e) => &e.meta,
                };
                newest = newest.max(Some(meta.occurred_at));
                history.push(d, &ev);
            }
            Err(e) => dead_letter(producer, d, "invalid", &e.0).await?,
        }
    }

    for row in files.values().flatten() {
        upsert_file(&mut tx, row).await?;
    }
    for row in jobs.values().flatten() {
        upsert_job(&mut tx, row).await?;
    }
    history.insert(&mut tx).await?;
    store_offsets(&mut tx, batch).await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    for d in batch {
        metrics::counter!(PROJECTOR_EVENTS, "topic" => d.topic.clone()).increment(1);
    }
    if let Some(t) = newest {
        let lag = (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::gauge!(PROJECTOR_LAG_SECONDS).set(lag);
    }
    Ok(())
}

/// Locks the batch's offset rows and drops events the model already holds.
async fn lock_and_filter<'a>(
    tx: &mut Transaction<'_, Postgres>,
    batch: &'a [Delivery],
) -> Result<Vec<&'a Delivery>, ProjectionError> {
    let mut keys: Vec<(String, i32)> = batch
        .iter()
        .map(|d| (d.topic.clone(), d.partition))
        .collect();
    keys.sort();
    keys.dedup();
    let topics: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
    let parts: Vec<i32> = keys.iter().map(|k| k.1).collect();
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT o.topic, o.partition, o.next_offset FROM projector_offsets o
         JOIN UNNEST($1::text[], $2::int[]) AS k(topic, partition) USING (topic, partition)
         ORDER BY o.topic, o.partition FOR UPDATE OF o",
    )
    .bind(&topics)
    .bind(&parts)
    .fetch_all(&mut **tx)
    .await?;
    let next: HashMap<(String, i32), i64> = rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
    Ok(batch
        .iter()
        .filter(|d| {
            next.get(&(d.topic.clone(), d.partition))
                .is_none_or(|n| d.offset >= *n)
        })
        .collect())
}

async fn load_rows(
    tx: &mut Transaction<'_, Postgres>,
    files: &mut HashMap<String, Option<FileRow>>,
    jobs: &mut HashMap<String, Option<JobRow>>,
) -> Result<(), ProjectionError> {
    if !files.is_empty() {
        let ids: Vec<String> = files.keys().cloned().collect();
        let rows: Vec<FileRow> = sqlx::query_as(
            "SELECT * FROM files WHERE file_id = ANY($1) ORDER BY file_id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
        for r in rows {
            files.insert(r.file_id.clone(), Some(r));
        }
    }
    if !jobs.is_empty() {
        let ids: Vec<String> = jobs.keys().cloned().collect();
        let rows: Vec<JobRow> =
            sqlx::query_as("SELECT * FROM jobs WHERE job_id = ANY($1) ORDER BY job_id FOR UPDATE")
                .bind(&ids)
                .fetch_all(&mut **tx)
                .await?;
        for r in rows {
            jobs.insert(r.job_id.clone(), Some(r));
        }
    }
    Ok(())
}

async fn upsert_file(tx: &mut Transaction<'_, Postgres>, r: &FileRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO files (file_id, owner, filename, mime, size, sha256, storage_key, status, error_code,
                            error_message, probe, request_ids, created_at, updated_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)
         ON CONFLICT (file_id) DO UPDATE SET owner=$2, filename=$3, mime=$4, size=$5, sha256=$6,
           storage_key=$7, status=$8, error_code=$9, error_message=$10, probe=$11, request_ids=$12,
           created_at=$13, updated_at=$14",
    )
    .bind(&r.file_id)
    .bind(&r.owner)
    .bind(&r.filename)
    .bind(&r.mime)
    .bind(r.size)
    .bind(&r.sha256)
    .bind(&r.storage_key)
    .bind(&r.status)
    .bind(&r.error_code)
    .bind(&r.error_message)
    .bind(&r.probe)
    .bind(&r.request_ids)
    .bind(r.created_at)
    .bind(r.updated_at)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

async fn upsert_job(tx: &mut Transaction<'_, Postgres>, r: &JobRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO jobs (job_id, file_id, owner, model, variation, model_version, params, status, skipped,
                           progress, message, attempt, error_code, error_message, retryable, outputs,
                           request_id, created_at, started_at, finished_at, updated_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21)
         ON CONFLICT (job_id) DO UPDATE SET owner=$3, model_version=$6, params=$7, status=$8, skipped=$9,
           progress=$10, message=$11, attempt=$12, error_code=$13, error_message=$14, retryable=$15,
           outputs=$16, request_id=$17, created_at=$18, started_at=$19, finished_at=$20, updated_at=$21",
    )
    .bind(&r.job_id)
    .bind(&r.file_id)
    .bind(&r.owner)
    .bind(&r.model)
    .bind(&r.variation)
    .bind(&r.model_version)
    .bind(&r.params)
    .bind(&r.status)
    .bind(r.skipped)
    .bind(r.progress)
    .bind(&r.message)
    .bind(r.attempt)
    .bind(&r.error_code)
    .bind(&r.error_message)
    .bind(r.retryable)
    .bind(&r.outputs)
    .bind(&r.request_id)
    .bind(r.created_at)
    .bind(r.started_at)
    .bind(r.finished_at)
    .bind(r.updated_at)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// The history rows of a batch, inserted with one statement.
#[derive(Default)]
struct History {
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    event_id: Vec<String>,
    file_id: Vec<String>,
    job_id: Vec<Option<String>>,
    kind: Vec<String>,
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    request_id: Vec<String>,
    body: Vec<String>,
}

impl History {
    fn push(&mut self, d: &Delivery, ev: &Decoded) {
        let (meta, file_id, job_id, kind, body) = match ev {
            Decoded::File(e) => (
                &e.meta,
                &e.file_id,
                None,
                file_kind(e),
                serde_json::to_string(&e.body),
            ),
            Decoded::Job(e) => (
                &e.meta,
                &e.file_id,
                Some(e.job_id.clone()),
                e.body.kind().to_string(),
                serde_json::to_string(e),
            ),
        };
        self.topic.push(d.topic.clone());
        self.partition.push(d.partition);
        self.offset.push(d.offset);
        self.event_id.push(meta.event_id.clone());
        self.file_id.push(file_id.clone());
        self.job_id.push(job_id);
        self.kind.push(kind);
        self.occurred_at.push(meta.occurred_at);
        self.request_id.push(meta.request_id.clone());
        self.body.push(body.unwrap_or_else(|_| "null".into()));
    }

    async fn insert(&self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        if self.topic.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO events (topic, partition, \"offset\", event_id, file_id, job_id, kind, occurred_at, request_id, body)
             SELECT t, p, o, e, f, j, k, a, r, b::jsonb FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::text[],
               $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[]) AS x(t,p,o,e,f,j,k,a,r,b)
             ON CONFLICT (topic, partition, \"offset\") DO NOTHING",
        )
        .bind(&self.topic)
        .bind(&self.partition)
        .bind(&self.offset)
        .bind(&self.event_id)
        .bind(&self.file_id)
        .bind(&self.job_id)
        .bind(&self.kind)
        .bind(&self.occurred_at)
        .bind(&self.request_id)
        .bind(&self.body)
        .execute(&mut **tx)
        .await
        .map(|_| ())
    }
}

fn file_kind(e: &FileEvent) -> String {
    use roar_schemas::FileBody::*;
    match e.body {
        Registered { .. } => "file_registered",
        Uploaded(_) => "file_uploaded",
        Probed(_) => "file_probed",
        ProbeFailed { .. } => "file_probe_failed",
        Deleted { .. } => "file_deleted",
    }
    .to_string()
}

async fn store_offsets(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[Delivery],
) -> Result<(), sqlx::Error> {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for d in batch {
        let e = next.entry((d.topic.clone(), d.partition)).or_insert(0);
        *e = (*e).max(d.offset + 1);
    }
    for ((t, p), o) in next {
        sqlx::query(
            "INSERT INTO projector_offsets (topic, partition, next_offset, updated_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (topic, partition) DO UPDATE
               SET next_offset = GREATEST(projector_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()",
        )
        .bind(t)
        .bind(p)
        .bind(o)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Moves a partition past one event without applying it (after it went to the DLQ).
async fn skip_in_tx(pool: &PgPool, d: &Delivery) -> Result<(), ProjectionError> {
    let mut tx = pool.begin().await?;
    store_offsets(&mut tx, std::slice::from_ref(d)).await?;
    tx.commit().await?;
    Ok(())
}

async fn dead_letter(
    producer: &EventProducer,
    d: &Delivery,
    kind: &str,
    reason: &str,
) -> Result<(), ProjectionError> {
    send_dead_letter(producer, GROUP, d, kind, reason)
        .await
        .map_err(|e| ProjectionError::Other(e.to_string()))
}
