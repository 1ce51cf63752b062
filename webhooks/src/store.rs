//! The webhook tables (migration `webhooks` in roar-projections): registrations, written by
//! the API, and deliveries, written by the dispatcher.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::seal::{SealError, SealKeys};
use crate::status::DeliveryStatus;

/// One registration (`POST /webhooks`, or a job's `callback_url`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Registration {
    pub webhook_id: String,
    pub owner: String,
    /// A callback's job (the one its request answered about); `None` for a user's webhook.
    pub job_id: Option<String>,
    /// The pipeline a preset's or chained request's callback follows to its end.
    pub pipeline_id: Option<String>,
    /// Every job a callback follows (`job_id` among them); empty for a user's webhook.
    pub job_ids: Vec<String>,
    pub url: String,
    pub events: Vec<String>,
    /// The signing secret in clear: only rows written before secrets were sealed, until the
    /// dispatcher re-seals them ([`reseal`]).
    pub secret: Option<String>,
    /// The id of the `webhooks.secret_key` that sealed `secret_sealed`.
    pub secret_key_id: Option<String>,
    /// The signing secret sealed ([`crate::seal`]).
    pub secret_sealed: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

/// One delivery's record (`GET /webhooks/{id}/deliveries`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    #[sqlx(try_from = "String")]
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A delivery claimed for an attempt: what to send, where, signed with what.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub webhook_id: String,
    pub event_id: String,
    pub body: String,
    pub attempts: i32,
    pub url: String,
    pub secret: Option<String>,
    pub secret_key_id: Option<String>,
    pub secret_sealed: Option<Vec<u8>>,
}

impl Due {
    /// The signing secret: opened with `keys`, or a not yet re-sealed row's clear one.
    pub fn signing_secret(&self, keys: &SealKeys) -> Result<String, SealError> {
        match (&self.secret_key_id, &self.secret_sealed, &self.secret) {
            (Some(id), Some(bytes), _) => keys.open(&self.webhook_id, id, bytes),
            (_, _, Some(clear)) => Ok(clear.clone()),
            // The table's check constraint rules this out.
            _ => Err(SealError::Unreadable(String::new())),
        }
    }
}

/// A new webhook id.
pub fn new_id() -> String {
    format!("wh_{}", uuid::Uuid::new_v4().simple())
}

pub async fn insert(pool: &PgPool, r: &Registration) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_registrations
             (webhook_id, owner, job_id, pipeline_id, job_ids, url, events, secret,
              secret_key_id, secret_sealed, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&r.webhook_id)
    .bind(&r.owner)
    .bind(&r.job_id)
    .bind(&r.pipeline_id)
    .bind(&r.job_ids)
    .bind(&r.url)
    .bind(&r.events)
    .bind(&r.secret)
    .bind(&r.secret_key_id)
    .bind(&r.secret_sealed)
    .bind(r.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// How many webhooks `owner` holds (job callbacks not counted: the job quotas bound them).
pub async fn count(pool: &PgPool, owner: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM webhook_registrations WHERE owner = $1 AND job_id IS NULL",
    )
    .bind(owner)
    .fetch_one(pool)
    .await
}

/// `owner`'s webhooks, oldest first (at most `webhooks.max_per_user`); job callbacks, one per
/// job, are not listed: they are reached by the ids `POST /process` answered.
pub async fn list(pool: &PgPool, owner: &str) -> Result<Vec<Registration>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM webhook_registrations WHERE owner = $1 AND job_id IS NULL
         ORDER BY created_at, webhook_id",
    )
    .bind(owner)
    .fetch_all(pool)
    .await
}

/// `webhook_id` if `owner` holds it.
pub async fn get(
    pool: &PgPool,
    owner: &str,
    webhook_id: &str,
) -> Result<Option<Registration>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM webhook_registrations WHERE webhook_id = $1 AND owner = $2")
        .bind(webhook_id)
        .bind(owner)
        .fetch_optional(pool)
        .await
}

/// Deletes `webhook_id` (and its deliveries) if `owner` holds it; false if not.
pub async fn delete(pool: &PgPool, owner: &str, webhook_id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM webhook_registrations WHERE webhook_id = $1 AND owner = $2")
        .bind(webhook_id)
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// The newest deliveries of one registration.
pub async fn deliveries(
    pool: &PgPool,
    webhook_id: &str,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT webhook_id, event_id, event_type, status, attempts, next_attempt_at,
                last_status_code, last_error, created_at, finished_at
         FROM webhook_deliveries WHERE webhook_id = $1
         ORDER BY created_at DESC, event_id LIMIT $2",
    )
    .bind(webhook_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The registrations an event of `job_id` (on `file_id`) may go to: the callbacks following
/// the job (its own, or its pipeline's), and every webhook of the job's owner (from the read model; `None` while the projector has not
/// seen the job or its file yet). Filters are matched by the caller.
pub async fn candidates(
    pool: &PgPool,
    job_id: &str,
    file_id: &str,
) -> Result<(Vec<Registration>, Option<String>), sqlx::Error> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT owner FROM jobs WHERE job_id = $1 AND owner <> ''
         UNION ALL SELECT owner FROM files WHERE file_id = $2 AND owner <> '' LIMIT 1",
    )
    .bind(job_id)
    .bind(file_id)
    .fetch_optional(pool)
    .await?;
    let regs = sqlx::query_as(
        "SELECT * FROM webhook_registrations
         WHERE job_id = $1 OR job_ids @> ARRAY[$1]::text[] OR (job_id IS NULL AND owner = $2)",
    )
    .bind(job_id)
    .bind(owner.as_deref().unwrap_or(""))
    .fetch_all(pool)
    .await?;
    Ok((regs, owner))
}

/// Whether any user holds a webhook for all their jobs (when none does, an event whose owner
/// is not known yet can only go to its job's callbacks).
pub async fn any_user_webhooks(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_registrations WHERE job_id IS NULL)")
        .fetch_one(pool)
        .await
}

/// Records one pending delivery per registration (a repeat of the same event adds nothing).
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    webhook_ids: &[String],
    event_id: &str,
    event_type: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO webhook_deliveries
             (webhook_id, event_id, event_type, body, status, next_attempt_at, created_at)
         SELECT id, $2, $3, $4, $6, $5, $5 FROM unnest($1::text[]) AS id
         ON CONFLICT DO NOTHING",
    )
    .bind(webhook_ids)
    .bind(event_id)
    .bind(event_type)
    .bind(body)
    .bind(now)
    .bind(DeliveryStatus::Pending.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected())
}

/// Records that `job_id`, one of the jobs `webhook_id` follows, ended as `kind` (`completed`,
/// `failed`, ...); returns how every followed job has ended, in `job_ids` order, once the last
/// of them has (a repeat of the same event changes nothing and answers the same).
pub async fn mark_ended(
    tx: &mut Transaction<'_, Postgres>,
    webhook_id: &str,
    job_id: &str,
    kind: &str,
) -> Result<Option<Vec<(String, String)>>, sqlx::Error> {
    let (ended, job_ids): (serde_json::Value, Vec<String>) = sqlx::query_as(
        "UPDATE webhook_registrations SET ended = ended || jsonb_build_object($2::text, $3::text)
         WHERE webhook_id = $1 RETURNING ended, job_ids",
    )
    .bind(webhook_id)
    .bind(job_id)
    .bind(kind)
    .fetch_one(&mut **tx)
    .await?;
    let all: Option<Vec<(String, String)>> = job_ids
        .into_iter()
        .map(|j| {
            let k = ended.get(&j)?.as_str()?.to_string();
            Some((j, k))
        })
        .collect();
    Ok(all)
}

/// The pipelines `job_id` is a step of (the read model's `pipeline_steps`).
pub async fn pipelines_of(pool: &PgPool, job_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT pipeline_id FROM pipeline_steps WHERE job_id = $1")
        .bind(job_id)
        .fetch_all(pool)
        .await
}

/// Records that `job_id`, a step's job of `pipeline_id`, ended as `kind`, for the users'
/// webhooks; returns how every step's job has ended, in the pipeline's order, once the last
/// of them has (a repeat of the same event changes nothing and answers the same).
pub async fn pipeline_step_ended(
    tx: &mut Transaction<'_, Postgres>,
    pipeline_id: &str,
    job_id: &str,
    kind: &str,
) -> Result<Option<Vec<(String, String)>>, sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_pipeline_ends (pipeline_id, job_id, ended) VALUES ($1, $2, $3)
         ON CONFLICT (pipeline_id, job_id) DO UPDATE SET ended = EXCLUDED.ended",
    )
    .bind(pipeline_id)
    .bind(job_id)
    .bind(kind)
    .execute(&mut **tx)
    .await?;
    let steps: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT s.job_id, e.ended FROM pipeline_steps s
         LEFT JOIN webhook_pipeline_ends e ON e.pipeline_id = s.pipeline_id AND e.job_id = s.job_id
         WHERE s.pipeline_id = $1 ORDER BY s.position",
    )
    .bind(pipeline_id)
    .fetch_all(&mut **tx)
    .await?;
    if steps.is_empty() {
        return Ok(None);
    }
    Ok(steps.into_iter().map(|(j, k)| Some((j, k?))).collect())
}

/// Claims up to `limit` due deliveries for `lease` (another dispatcher skips them meanwhile;
/// one that dies mid-attempt leaves them due again when the lease ends).
pub async fn claim(
    pool: &PgPool,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(
        "WITH due AS (
             SELECT webhook_id, event_id FROM webhook_deliveries
             WHERE status = $3 AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE webhook_deliveries d
         SET next_attempt_at = now() + make_interval(secs => $2)
         FROM due, webhook_registrations r
         WHERE d.webhook_id = due.webhook_id AND d.event_id = due.event_id
           AND r.webhook_id = d.webhook_id
         RETURNING d.webhook_id, d.event_id, d.body, d.attempts, r.url, r.secret,
                   r.secret_key_id, r.secret_sealed",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .bind(DeliveryStatus::Pending.as_str())
    .fetch_all(pool)
    .await
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Final, or `Pending` to retry at `retry_at`.
    pub status: DeliveryStatus,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub retry_at: DateTime<Utc>,
}

/// Records an attempt of a claimed delivery.
pub async fn finish_attempt(
    pool: &PgPool,
    d: &Due,
    a: &Attempt,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let finished = a.status.is_final().then_some(now);
    sqlx::query(
        "UPDATE webhook_deliveries
         SET status = $3, attempts = attempts + 1, next_attempt_at = $4,
             last_status_code = $5, last_error = $6, finished_at = $7
         WHERE webhook_id = $1 AND event_id = $2",
    )
    .bind(&d.webhook_id)
    .bind(&d.event_id)
    .bind(a.status.as_str())
    .bind(a.retry_at)
    .bind(a.status_code)
    .bind(&a.error)
    .bind(finished)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deliveries waiting for an attempt (the retry queue's depth).
pub async fn pending(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = $1")
        .bind(DeliveryStatus::Pending.as_str())
        .fetch_one(pool)
        .await
}

/// Deletes finished deliveries older than `days`, job callbacks older than that with no
/// delivery left, and the pipeline step ends recorded before then; returns (deliveries,
/// callbacks) deleted.
pub async fn sweep(pool: &PgPool, days: u32) -> Result<(u64, u64), sqlx::Error> {
    let deliveries = sqlx::query(
        "DELETE FROM webhook_deliveries
         WHERE status <> $2 AND finished_at < now() - make_interval(days => $1)",
    )
    .bind(days as i32)
    .bind(DeliveryStatus::Pending.as_str())
    .execute(pool)
    .await?
    .rows_affected();
    let callbacks = sqlx::query(
        "DELETE FROM webhook_registrations r
         WHERE r.job_id IS NOT NULL AND r.created_at < now() - make_interval(days => $1)
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.webhook_id = r.webhook_id)",
    )
    .bind(days as i32)
    .execute(pool)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM webhook_pipeline_ends WHERE recorded_at < now() - make_interval(days => $1)",
    )
    .bind(days as i32)
    .execute(pool)
    .await?;
    Ok((deliveries, callbacks))
}

/// Seals every secret not sealed under the current key: rows from before sealing (clear) and
/// rows under a retired key, so `webhooks.previous_secret_keys` can be emptied after one pass.
/// Returns (re-sealed, left as they were because no held key opens them).
pub async fn reseal(pool: &PgPool, keys: &SealKeys) -> Result<(u64, u64), sqlx::Error> {
    let Some(current) = keys.current_id() else {
        return Ok((0, 0));
    };
    #[derive(sqlx::FromRow)]
    struct Row {
        webhook_id: String,
        secret: Option<String>,
        secret_key_id: Option<String>,
        secret_sealed: Option<Vec<u8>>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT webhook_id, secret, secret_key_id, secret_sealed FROM webhook_registrations
         WHERE secret IS NOT NULL OR secret_key_id IS DISTINCT FROM $1",
    )
    .bind(current)
    .fetch_all(pool)
    .await?;
    let (mut done, mut unreadable) = (0, 0);
    for r in rows {
        let opened = match (&r.secret_key_id, &r.secret_sealed, &r.secret) {
            (Some(id), Some(bytes), _) => keys.open(&r.webhook_id, id, bytes),
            (_, _, Some(clear)) => Ok(clear.clone()),
            _ => Err(SealError::Unreadable(String::new())),
        };
        let sealed = opened.and_then(|plain| keys.seal(&r.webhook_id, &plain));
        let sealed = match sealed {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(webhook_id = %r.webhook_id, error = %e, "webhook secret not re-sealed");
                unreadable += 1;
                continue;
            }
        };
        // Only if the row is still what was read (another dispatcher may have been first).
        let n = sqlx::query(
            "UPDATE webhook_registrations
             SET secret = NULL, secret_key_id = $2, secret_sealed = $3
             WHERE webhook_id = $1 AND secret IS NOT DISTINCT FROM $4
               AND secret_key_id IS NOT DISTINCT FROM $5",
        )
        .bind(&r.webhook_id)
        .bind(&sealed.key_id)
        .bind(&sealed.bytes)
        .bind(&r.secret)
        .bind(&r.secret_key_id)
        .execute(pool)
        .await?
        .rows_affected();
        done += n;
    }
    Ok((done, unreadable))
}
