//! Read-side queries over the read model, used by the orchestrator.

use sqlx::PgPool;

use crate::apply::{FileRow, JobRow};

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
    pub pool: PgPool,
}

impl ReadModel {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
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

    /// A page of `owner`'s files, newest first; `before` is the last (created_at, file_id) seen.
    pub async fn songs(
        &self,
        owner: &str,
        limit: i64,
        before: Option<(chrono::DateTime<chrono::Utc>, String)>,
    ) -> Result<Vec<FileRow>, sqlx::Error> {
        let (t, id) = match before {
            Some((t, id)) => (Some(t), Some(id)),
            None => (None, None),
        };
        sqlx::query_as::<_, FileRow>(
            "SELECT * FROM files WHERE owner = $1 AND status <> 'deleted'
               AND ($2::timestamptz IS NULL OR (created_at, file_id) < ($2, $3))
             ORDER BY created_at DESC, file_id DESC LIMIT $4",
        )
        .bind(owner)
        .bind(t)
        .bind(id)
        .bind(limit)
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

    /// Whether the projector has applied the message at (`topic`, `partition`, `offset`).
    pub async fn has_applied(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<bool, sqlx::Error> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT next_offset FROM projector_offsets WHERE topic = $1 AND partition = $2",
        )
        .bind(topic)
        .bind(partition)
        .fetch_optional(&self.pool)
        .await?;
        Ok(next.is_some_and(|n| n > offset))
    }

    /// Checks the database answers (readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}
