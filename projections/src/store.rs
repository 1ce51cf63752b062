//! Read-side queries over the read model, used by the orchestrator. Its SQL is here, behind
//! [`ReadModel`]'s methods; the pool stays private so readers cannot grow queries of their own.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use roar_schemas::{FileStatus, JobBody, JobStatus};
use sqlx::postgres::PgListener;
use sqlx::PgPool;

use crate::apply::{apply_file, apply_job, FileRow, JobRow};
use crate::batch::NOTIFY_CHANNEL;
use crate::event::{decode, Decoded};
use crate::offsets;
use crate::pipelines::{PipelineRow, PipelineStepRow};

/// One entry of a file's event history.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct HistoryRow {
    pub seq: i64,
    pub job_id: Option<String>,
    pub kind: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub body: serde_json::Value,
}

/// Queries over the projection's tables.
#[derive(Clone, Debug)]
pub struct ReadModel {
    pool: PgPool,
}

/// A page position: the last (time, id) of the previous page.
pub type Before = Option<(DateTime<Utc>, String)>;

/// Wakes on every committed projector batch (Postgres `LISTEN`).
pub struct Commits(PgListener);

impl Commits {
    /// Waits for the next commit; an error means the connection is lost (listen again).
    pub async fn next(&mut self) -> Result<(), sqlx::Error> {
        self.0.recv().await.map(|_| ())
    }
}

impl ReadModel {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool it reads through (the live model's database).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Events the projector has applied in all (its stored positions summed; every topic
    /// starting empty): cheap to poll while waiting for it to catch up.
    pub async fn events_applied(&self) -> Result<i64, sqlx::Error> {
        offsets::applied_total(&self.pool).await
    }

    /// Up to `limit` files still waiting for their direct upload whose latest registration
    /// (`updated_at`) is older than `before`, oldest first: the uploads the sweeper expires.
    pub async fn pending_uploads_before(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT file_id FROM files WHERE status = $1 AND updated_at < $2
             ORDER BY updated_at LIMIT $3",
        )
        .bind(FileStatus::PendingUpload.as_str())
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn file(&self, file_id: &str) -> Result<Option<FileRow>, sqlx::Error> {
        sqlx::query_as::<_, FileRow>("SELECT * FROM files WHERE file_id = $1")
            .bind(file_id)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn jobs_for_file(&self, file_id: &str) -> Result<Vec<JobRow>, sqlx::Error> {
        sqlx::query_as::<_, JobRow>(
            "SELECT * FROM jobs WHERE file_id = $1 ORDER BY created_at, job_id",
        )
        .bind(file_id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn job(&self, job_id: &str) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query_as::<_, JobRow>("SELECT * FROM jobs WHERE job_id = $1")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn pipeline(&self, pipeline_id: &str) -> Result<Option<PipelineRow>, sqlx::Error> {
        sqlx::query_as("SELECT * FROM pipelines WHERE pipeline_id = $1")
            .bind(pipeline_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// The file's pipelines, oldest first.
    pub async fn pipelines_for_file(&self, file_id: &str) -> Result<Vec<PipelineRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT * FROM pipelines WHERE file_id = $1 ORDER BY created_at, pipeline_id",
        )
        .bind(file_id)
        .fetch_all(&self.pool)
        .await
    }

    /// The steps of the pipelines `ids`, each pipeline's in request order.
    pub async fn pipeline_steps(
        &self,
        ids: &[String],
    ) -> Result<Vec<PipelineStepRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT * FROM pipeline_steps WHERE pipeline_id = ANY($1) ORDER BY pipeline_id, position",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
    }

    /// The jobs `ids` (those the read model has).
    pub async fn jobs(&self, ids: &[String]) -> Result<Vec<JobRow>, sqlx::Error> {
        sqlx::query_as("SELECT * FROM jobs WHERE job_id = ANY($1)")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
    }

    /// A page of `owner`'s files, newest first; `before` is the last (created_at, file_id) seen.
    pub async fn songs(
        &self,
        owner: &str,
        limit: i64,
        before: Before,
    ) -> Result<Vec<FileRow>, sqlx::Error> {
        let (t, id) = match before {
            Some((t, id)) => (Some(t), Some(id)),
            None => (None, None),
        };
        sqlx::query_as::<_, FileRow>(
            "SELECT * FROM files WHERE owner = $1 AND status <> $5
               AND ($2::timestamptz IS NULL OR (created_at, file_id) < ($2, $3))
             ORDER BY created_at DESC, file_id DESC LIMIT $4",
        )
        .bind(owner)
        .bind(t)
        .bind(id)
        .bind(limit)
        .bind(FileStatus::Deleted.as_str())
        .fetch_all(&self.pool)
        .await
    }

    /// A page of every user's jobs (only those with `status`, when given), most recently
    /// changed first; `before` is the last (updated_at, job_id) seen.
    pub async fn jobs_page(
        &self,
        status: Option<JobStatus>,
        limit: i64,
        before: Before,
    ) -> Result<Vec<JobRow>, sqlx::Error> {
        let (t, id) = match before {
            Some((t, id)) => (Some(t), Some(id)),
            None => (None, None),
        };
        sqlx::query_as(
            "SELECT * FROM jobs WHERE ($1::text IS NULL OR status = $1)
               AND ($2::timestamptz IS NULL OR (updated_at, job_id) < ($2, $3))
             ORDER BY updated_at DESC, job_id DESC LIMIT $4",
        )
        .bind(status.map(JobStatus::as_str))
        .bind(t)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// `model`'s jobs on files that are not deleted (all files, or only `files` when given),
    /// first requested at or after `since` when given; by file, oldest first.
    pub async fn jobs_of_model(
        &self,
        model: &str,
        since: Option<DateTime<Utc>>,
        files: &[String],
    ) -> Result<Vec<JobRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT j.* FROM jobs j LEFT JOIN files f ON f.file_id = j.file_id
             WHERE j.model = $1 AND ($2::timestamptz IS NULL OR j.created_at >= $2)
               AND (cardinality($3::text[]) = 0 OR j.file_id = ANY($3))
               AND COALESCE(f.status, '') <> $4
             ORDER BY j.file_id, j.created_at, j.job_id",
        )
        .bind(model)
        .bind(since)
        .bind(files)
        .bind(FileStatus::Deleted.as_str())
        .fetch_all(&self.pool)
        .await
    }

    /// History entries of a file after `seq`, oldest first.
    pub async fn history_after(
        &self,
        file_id: &str,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<HistoryRow>, sqlx::Error> {
        sqlx::query_as::<_, HistoryRow>(
            "SELECT seq, job_id, kind, occurred_at, body FROM events WHERE file_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(file_id)
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Which of `file_ids` the read model still shows (not deleted): the event streams of
    /// the others end.
    pub async fn files_present(&self, file_ids: &[String]) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT file_id FROM files WHERE file_id = ANY($1) AND status <> $2")
            .bind(file_ids)
            .bind(roar_schemas::FileStatus::Deleted.as_str())
            .fetch_all(&self.pool)
            .await
    }

    /// The sequence number of the file's last history entry (0 when it has none).
    pub async fn last_seq(&self, file_id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COALESCE(max(seq), 0)::bigint FROM events WHERE file_id = $1")
            .bind(file_id)
            .fetch_one(&self.pool)
            .await
    }

    /// History entries of several files at once, each after its own `seq`, oldest first (at
    /// most `limit` in all): what the SSE fan-out reads after a commit.
    pub async fn history_after_each(
        &self,
        after: &[(String, i64)],
        limit: i64,
    ) -> Result<Vec<(String, HistoryRow)>, sqlx::Error> {
        let (files, seqs): (Vec<String>, Vec<i64>) = after.iter().cloned().unzip();
        type Row = (
            String,
            i64,
            Option<String>,
            String,
            DateTime<Utc>,
            serde_json::Value,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT e.file_id, e.seq, e.job_id, e.kind, e.occurred_at, e.body
             FROM unnest($1::text[], $2::bigint[]) AS c(file_id, after)
             CROSS JOIN LATERAL (
                 SELECT file_id, seq, job_id, kind, occurred_at, body FROM events
                 WHERE file_id = c.file_id AND seq > c.after ORDER BY seq LIMIT $3
             ) e
             ORDER BY e.seq LIMIT $3",
        )
        .bind(files)
        .bind(seqs)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(file_id, seq, job_id, kind, occurred_at, body)| {
                (
                    file_id,
                    HistoryRow {
                        seq,
                        job_id,
                        kind,
                        occurred_at,
                        body,
                    },
                )
            })
            .collect())
    }

    /// The file as the read model showed it at `t`: its history up to `t` folded again with
    /// the projector's own apply functions. `None` if nothing was known about it by then.
    pub async fn file_as_of(
        &self,
        file_id: &str,
        t: DateTime<Utc>,
    ) -> Result<Option<FileRow>, sqlx::Error> {
        let mut row = None;
        for ev in self.history_until(file_id, t, false).await? {
            if let Decoded::File(e) = ev {
                // Only applied events are in the history, so this cannot fail but for data
                // written by hand; such an event is left out as the projector left it out.
                if let Ok(r) = apply_file(row.clone(), &e) {
                    row = Some(r);
                }
            }
        }
        Ok(row)
    }

    /// The file's jobs as they were at `t`, ordered like [`ReadModel::jobs_for_file`].
    pub async fn jobs_as_of(
        &self,
        file_id: &str,
        t: DateTime<Utc>,
    ) -> Result<Vec<JobRow>, sqlx::Error> {
        let mut jobs: BTreeMap<String, JobRow> = BTreeMap::new();
        for ev in self.history_until(file_id, t, true).await? {
            match ev {
                Decoded::Job(e, req) => {
                    let applied = apply_job(jobs.get(&e.job_id).cloned(), &e).and_then(|mut r| {
                        crate::apply::apply_request(&mut r, req.as_ref()).map(|()| r)
                    });
                    if let Ok(r) = applied {
                        jobs.insert(r.job_id.clone(), r);
                    }
                }
                // A pipeline's steps are queued jobs from its request on, as in the projection,
                // before the process manager requests any of them.
                Decoded::Pipeline(p) => {
                    let rows = crate::batch::pipeline_job_rows(&p, |id| jobs.get(id).cloned());
                    for r in rows.into_iter().flatten() {
                        jobs.insert(r.job_id.clone(), r);
                    }
                }
                Decoded::File(_) => {}
            }
        }
        let mut out: Vec<JobRow> = jobs.into_values().collect();
        out.sort_by(|a, b| (a.created_at, &a.job_id).cmp(&(b.created_at, &b.job_id)));
        Ok(out)
    }

    /// How many history events (the file's and its jobs') occurred at or before `t`: what
    /// folding the file at `t` reads.
    pub async fn history_len_until(
        &self,
        file_id: &str,
        t: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE file_id = $1 AND occurred_at <= $2")
            .bind(file_id)
            .bind(t)
            .fetch_one(&self.pool)
            .await
    }

    /// A file's history events (or its jobs' and pipelines') that occurred at or before `t`,
    /// in apply order.
    async fn history_until(
        &self,
        file_id: &str,
        t: DateTime<Utc>,
        jobs: bool,
    ) -> Result<Vec<Decoded>, sqlx::Error> {
        let rows: Vec<(String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT topic, payload FROM events
             WHERE file_id = $1 AND occurred_at <= $2
               AND ((job_id IS NOT NULL) = $3 OR ($3 AND topic = $4))
             ORDER BY seq",
        )
        .bind(file_id)
        .bind(t)
        .bind(jobs)
        .bind(roar_schemas::topics::PIPELINES)
        .fetch_all(&self.pool)
        .await?;
        let mut events: Vec<Decoded> = rows
            .into_iter()
            .filter_map(|(topic, payload)| decode(&topic, payload.as_deref()).ok())
            .collect();
        // The payloads are the log's bytes: a sealed name or prompt opens with the file's key.
        let sealed_prompt = |e: &Decoded| {
            matches!(e, Decoded::Job(j, _) if matches!(&j.body,
                JobBody::Queued { params_json, .. } if params_json.contains(crate::keys::PROMPT_SEALED)))
        };
        if events
            .iter()
            .any(|e| matches!(e, Decoded::File(f) if f.sealed.is_some()) || sealed_prompt(e))
        {
            let states =
                crate::keys::load(&self.pool, crate::keys::TABLE, &[file_id.to_string()]).await?;
            let key = states.get(file_id).and_then(|s| s.key.as_ref());
            for e in &mut events {
                match e {
                    // A name that does not open stays a placeholder.
                    Decoded::File(f) => {
                        if let Some(key) = key {
                            let _ = crate::keys::open(f, key);
                        }
                    }
                    Decoded::Job(j, _) => {
                        if let JobBody::Queued { params_json, .. } = &mut j.body {
                            if let Some(p) = crate::keys::open_prompt(params_json, file_id, key) {
                                *params_json = p;
                            }
                        }
                    }
                    Decoded::Pipeline(_) => {}
                }
            }
        }
        Ok(events)
    }

    /// Whether the projector has applied the message at (`topic`, `partition`, `offset`).
    pub async fn has_applied(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<bool, sqlx::Error> {
        offsets::has_applied(&self.pool, topic, partition, offset).await
    }

    /// Starts listening for projector commits.
    pub async fn listen(&self) -> Result<Commits, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(Commits(listener))
    }

    /// Checks the database answers (readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}
