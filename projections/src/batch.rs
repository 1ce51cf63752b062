//! One batch of deliveries applied to the read model in one transaction, together with the
//! consumed offsets. The same code serves the live projector and `roar projector rebuild`; a
//! [`Sink`] says which tables (through the pool's `search_path`) and whether poison events go to
//! the dead-letter topic (live) or are only skipped (a rebuild: the live projector already
//! dead-lettered them).

use std::collections::HashMap;
use std::time::Instant;

use roar_common::kafka::{send_dead_letter, Delivery, EventProducer};
use roar_common::metrics::{
    DLQ_MESSAGES, PROJECTOR_BATCH_SECONDS, PROJECTOR_EVENTS, PROJECTOR_LAG_SECONDS,
};
use roar_schemas::{DeadLetterKind, FileBody, JobBody};
use sqlx::{PgPool, Postgres, Transaction};

use crate::apply::{apply_file, apply_job, apply_request, FileRow, JobRow, Request};
use crate::error::{Invalid, ProjectionError};
use crate::event::{queued_steps, Decoded};
use crate::keys;
use crate::offsets;
use crate::rows::{upsert_files, upsert_jobs, History};

/// The Postgres channel notified after every committed batch.
pub const NOTIFY_CHANNEL: &str = "roar_projection";

/// The projector's name in Kafka (committed offsets, dead letters).
pub const GROUP: &str = "roar-projector";

/// Where a batch lands.
#[derive(Clone)]
pub(crate) struct Sink {
    /// A pool whose `search_path` names the model's schema.
    pub pool: PgPool,
    /// `Some` for the live model: poison events are dead-lettered. `None` for a rebuild.
    pub dlq: Option<EventProducer>,
    /// Whether to `pg_notify` readers after each commit (only the live model has readers).
    pub notify: bool,
    /// The data key table (`file_keys`), schema-qualified for a rebuild: it stays with the
    /// live model, never rebuilt.
    pub keys_table: String,
}

/// Applies a batch in one transaction with its offsets. If a row breaks a rule of the data
/// (a constraint, a value the database cannot store), the batch is re-applied one event per
/// transaction so the culprit alone is set aside. Any other database failure (a deadlock, a
/// timeout, a failover, a read-only replica, a lost connection) says nothing about the events:
/// it is returned, and the caller tries the whole batch again; nothing is skipped.
pub(crate) async fn apply_batch(sink: &Sink, batch: &[Delivery]) -> Result<(), ProjectionError> {
    let started = Instant::now();
    match apply_in_tx(sink, batch).await {
        Err(ProjectionError::Db(e)) if violated_by_data(&e) && batch.len() > 1 => {
            tracing::warn!(error = %e, "batch violates a constraint; applying one by one");
            for d in batch {
                match apply_in_tx(sink, std::slice::from_ref(d)).await {
                    Err(ProjectionError::Db(e)) if violated_by_data(&e) => {
                        dead_letter(sink, d, DeadLetterKind::Invalid, &e.to_string()).await?;
                        offsets::skip(&sink.pool, d).await?;
                    }
                    other => other?,
                }
            }
        }
        Err(ProjectionError::Db(e)) if violated_by_data(&e) => {
            let d = &batch[0];
            dead_letter(sink, d, DeadLetterKind::Invalid, &e.to_string()).await?;
            offsets::skip(&sink.pool, d).await?;
        }
        other => other?,
    }
    metrics::histogram!(PROJECTOR_BATCH_SECONDS).record(started.elapsed().as_secs_f64());
    Ok(())
}

/// Whether a database error blames the data, so trying again can never help: SQLSTATE class
/// 23 (integrity constraint violation) and 22 (data exception: a value out of range, text
/// PostgreSQL cannot store). Every other class (40 rollback: deadlock or serialization; 08
/// connection; 53 resources; 57 operator intervention, statement timeout; 25 read-only
/// transaction; 55 lock not available; XX internal) is about the database's state, not the
/// events.
fn violated_by_data(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("23") || c.starts_with("22")),
        _ => false,
    }
}

async fn apply_in_tx(sink: &Sink, batch: &[Delivery]) -> Result<(), ProjectionError> {
    let mut tx = sink.pool.begin().await?;
    let fresh = offsets::lock_and_filter(&mut tx, batch).await?;

    let mut files: HashMap<String, Option<FileRow>> = HashMap::new();
    let mut jobs: HashMap<String, Option<JobRow>> = HashMap::new();
    let mut decoded = Vec::with_capacity(fresh.len());
    for d in fresh {
        match Decoded::from_delivery(d) {
            Ok(Decoded::File(e)) => {
                files.entry(e.file_id.clone()).or_default();
                decoded.push((d, Decoded::File(e)));
            }
            Ok(Decoded::Job(e, req)) => {
                jobs.entry(e.job_id.clone()).or_default();
                decoded.push((d, Decoded::Job(e, req)));
            }
            Ok(Decoded::Pipeline(e)) => {
                for (q, _) in queued_steps(&e) {
                    jobs.entry(q.job_id).or_default();
                }
                decoded.push((d, Decoded::Pipeline(e)));
            }
            Err(e) => dead_letter(sink, d, DeadLetterKind::Undecodable, &e).await?,
        }
    }
    let mut ids: Vec<String> = decoded
        .iter()
        .map(|(_, e)| e.file_id().to_string())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let key_states = keys::load(&mut *tx, &sink.keys_table, &ids).await?;
    for (_, ev) in &mut decoded {
        // A request's sealed prompt (musicgen): the row and the history show what the client
        // sent, while the topic holds it readable by the file's key only.
        if let Decoded::Job(e, _) = ev {
            if let JobBody::Queued { params_json, .. } = &mut e.body {
                let key = key_states.get(&e.file_id).and_then(|s| s.key.as_ref());
                if let Some(opened) = keys::open_prompt(params_json, &e.file_id, key) {
                    *params_json = opened;
                }
            }
        }
        if let Decoded::File(e) = ev {
            if e.sealed.is_none() {
                continue;
            }
            let opened = match key_states.get(&e.file_id).and_then(|s| s.key.as_ref()) {
                Some(key) => keys::open(e, key),
                None => Err(keys::KeyError::Unreadable),
            };
            // An erased file's events are skipped below; any other that does not open shows
            // its placeholder rather than losing the file.
            if opened.is_err() && !erased(&key_states, ev) {
                tracing::warn!(file_id = %ev.file_id(), "sealed fields do not open with the file's key");
            }
        }
    }
    load_rows(&mut tx, &mut files, &mut jobs).await?;

    let mut history = History::default();
    let mut newest = None;
    let mut purge = Vec::new();
    for (d, ev) in decoded {
        if erased(&key_states, &ev) {
            // Deleted with its key: nothing of it is projected again; the deletion itself
            // removes what was projected before it.
            if let Decoded::File(e) = &ev {
                if let (FileBody::Deleted { .. }, Some(t)) = (
                    &e.body,
                    key_states.get(&e.file_id).and_then(|s| s.erased_before),
                ) {
                    files.insert(e.file_id.clone(), None);
                    purge.push((e.file_id.clone(), t));
                }
            }
            continue;
        }
        let applied = match &ev {
            Decoded::File(e) => {
                let slot = files.get_mut(&e.file_id).expect("loaded above");
                apply_file(slot.clone(), e).map(|row| *slot = Some(row))
            }
            Decoded::Job(e, req) => {
                let slot = jobs.get_mut(&e.job_id).expect("loaded above");
                apply_job(slot.clone(), e)
                    .and_then(|mut row| apply_request(&mut row, req.as_ref()).map(|()| row))
                    .map(|row| *slot = Some(row))
            }
            Decoded::Pipeline(e) => match apply_pipeline(&mut jobs, e) {
                Ok(()) => {
                    crate::pipelines::apply(&mut tx, e).await?;
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        match applied {
            Ok(()) => {
                newest = newest.max(Some(ev.meta().occurred_at));
                history.push(d, &ev);
            }
            Err(e) => dead_letter(sink, d, DeadLetterKind::Invalid, &e.0).await?,
        }
    }

    upsert_files(&mut tx, &files.values().flatten().collect::<Vec<_>>()).await?;
    upsert_jobs(&mut tx, &jobs.values().flatten().collect::<Vec<_>>()).await?;
    history.insert(&mut tx).await?;
    for (file_id, before) in &purge {
        purge_file(&mut tx, file_id, *before).await?;
    }
    offsets::store(&mut tx, batch).await?;
    if sink.notify {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;

    if sink.notify {
        for d in batch {
            metrics::counter!(PROJECTOR_EVENTS, "topic" => d.topic.clone()).increment(1);
        }
        if let Some(t) = newest {
            let lag = (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::gauge!(PROJECTOR_LAG_SECONDS).set(lag);
        }
    }
    Ok(())
}

/// Whether the event belongs to a deleted file's erased past (see [`keys`]).
fn erased(states: &HashMap<String, keys::KeyState>, ev: &Decoded) -> bool {
    states
        .get(ev.file_id())
        .is_some_and(|s| s.erased(ev.meta().occurred_at))
}

/// Removes everything the read model holds of a file up to its deletion at `before`: its row,
/// its jobs, pipelines and history. A life the file began after (the same song uploaded again:
/// the same id) is newer and stays.
async fn purge_file(
    tx: &mut Transaction<'_, Postgres>,
    file_id: &str,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    for sql in [
        "DELETE FROM files WHERE file_id = $1 AND created_at <= $2",
        "DELETE FROM jobs WHERE file_id = $1 AND created_at <= $2",
        "DELETE FROM events WHERE file_id = $1 AND occurred_at <= $2",
        "DELETE FROM pipeline_steps WHERE pipeline_id IN
           (SELECT pipeline_id FROM pipelines WHERE file_id = $1 AND created_at <= $2)",
        "DELETE FROM pipelines WHERE file_id = $1 AND created_at <= $2",
    ] {
        sqlx::query(sql)
            .bind(file_id)
            .bind(before)
            .execute(&mut **tx)
            .await?;
    }
    tracing::info!(%file_id, "deleted file purged from the read model");
    Ok(())
}

/// Queues every step's job of a requested pipeline (all or nothing). The steps' jobs are not
/// requested yet, so the rows keep their last request time: a failure is superseded only by a
/// real request.
fn apply_pipeline(
    jobs: &mut HashMap<String, Option<JobRow>>,
    e: &roar_schemas::PipelineEvent,
) -> Result<(), Invalid> {
    crate::pipelines::validate(e)?;
    let rows = pipeline_job_rows(e, |id| jobs.get(id).cloned().flatten())?;
    for row in rows {
        jobs.insert(row.job_id.clone(), Some(row));
    }
    Ok(())
}

/// The job rows a `PipelineRequested` makes: each step's job queued with its input, on top of
/// its row so far (`before`), keeping the time a step's job was really requested (a queued
/// step's row has none). The projector and `GET /status?as_of=` fold pipelines with it alike.
pub(crate) fn pipeline_job_rows(
    e: &roar_schemas::PipelineEvent,
    before: impl Fn(&str) -> Option<JobRow>,
) -> Result<Vec<JobRow>, Invalid> {
    let mut rows = Vec::new();
    for (q, input) in queued_steps(e) {
        let before = before(&q.job_id);
        let requested = before.as_ref().and_then(|r| r.requested_at);
        let mut row = apply_job(before, &q)?;
        row.requested_at = requested;
        // Not requested yet (the process manager asks for it when its input is ready): no
        // attempt, only what it will read.
        apply_request(&mut row, Some(&Request { attempt: 0, input }))?;
        rows.push(row);
    }
    Ok(rows)
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

/// Sends a poison event to the dead-letter topic (live model) or only logs it (a rebuild,
/// whose events the live projector already dead-lettered).
async fn dead_letter(
    sink: &Sink,
    d: &Delivery,
    kind: DeadLetterKind,
    reason: &str,
) -> Result<(), ProjectionError> {
    let Some(producer) = &sink.dlq else {
        tracing::debug!(topic = %d.topic, partition = d.partition, offset = d.offset, kind = kind.as_str(), %reason, "rebuild skips a poison event");
        return Ok(());
    };
    send_dead_letter(producer, GROUP, d, kind, reason).await?;
    metrics::counter!(DLQ_MESSAGES, "topic" => d.topic.clone(), "kind" => kind.as_str())
        .increment(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::error::Error;

    use sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl Error for Sqlstate {}

    impl DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn db(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Sqlstate(code)))
    }

    #[test]
    fn only_errors_that_blame_the_data_dead_letter() {
        // unique, check, not null, foreign key; jsonb NUL, numeric out of range, bad text.
        for code in [
            "23505", "23514", "23502", "23503", "22P05", "22003", "22021",
        ] {
            assert!(violated_by_data(&db(code)), "{code}");
        }
        // deadlock, serialization, connection lost, admin shutdown, statement timeout,
        // read-only replica, lock not available, disk full, out of memory, internal.
        for code in [
            "40P01", "40001", "08006", "57P01", "57014", "25006", "55P03", "53100", "53200",
            "XX000",
        ] {
            assert!(!violated_by_data(&db(code)), "{code}");
        }
        assert!(!violated_by_data(&sqlx::Error::PoolTimedOut));
    }
}
