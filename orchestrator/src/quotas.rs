//! Per-user quotas (`quota.*`): jobs in flight, jobs per day, stored bytes, pending direct
//! uploads. The read model alone lags the topics, so a burst of requests would all pass the
//! same stale count; every accepted job request and upload is therefore admitted first:
//!
//! - under a per-user advisory lock (one admission of a user at a time, on every replica), the
//!   usage is counted: the read model plus the admissions it does not reflect yet;
//! - over a limit, the request is refused (429 with the limit's code, 413 `storage_quota`);
//! - otherwise the admission row is written in the same (short) transaction; a request whose
//!   event then never reaches the topic deletes it again ([`Admission::release`]). No
//!   connection is held across the send.
//!
//! An admission is reflected once the read model's row for its job or file was updated at or
//! after it (the event's own time is the admission's, or later).
//!
//! A pipeline (a preset, or a job on an output of a job not completed yet) is admitted as a
//! whole when it is requested ([`admit_jobs`]): every step that will run counts at once, or the
//! request is refused. The process manager then requests the steps without asking again: a
//! pipeline once accepted runs to its end instead of stopping halfway on a limit.

use chrono::{DateTime, Utc};
use roar_schemas::{FileStatus, JobStatus};

use crate::views::{Usage, UsageLimits};
use crate::{ApiError, AppState};

/// Admissions older than this are reflected in the read model or never will be (their event
/// was lost with its request); they still count for `jobs_per_day`.
const UNREFLECTED_WINDOW: chrono::Duration = chrono::Duration::minutes(10);

/// What an admission is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Job,
    /// Bytes stored by a multipart upload.
    Upload,
    /// A direct upload registered (pending; its declared size reserved).
    Registration,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Job => "job",
            Kind::Upload => "upload",
            Kind::Registration => "registration",
        }
    }
}

/// An accepted request's place in its owner's quota: it counts from admission on; a request
/// whose event never reaches the topic gives it back ([`Admission::release`]).
#[must_use = "release the admission when its event is not sent"]
pub(crate) struct Admission {
    owner: String,
    kind: Kind,
    /// One id, or a pipeline's jobs admitted together.
    ref_ids: Vec<String>,
    at: DateTime<Utc>,
}

impl Admission {
    /// The request failed before its event was sent: it no longer counts.
    pub(crate) async fn release(self, s: &AppState) {
        let done = sqlx::query(
            "DELETE FROM quota_admissions
             WHERE owner = $1 AND kind = $2 AND ref_id = ANY($3) AND admitted_at = $4",
        )
        .bind(&self.owner)
        .bind(self.kind.as_str())
        .bind(&self.ref_ids)
        .bind(self.at)
        .execute(&s.db)
        .await;
        // It then counts until it ages out of the window: a refusal too many, never one short.
        if let Err(e) = done {
            tracing::warn!(error = %e, ref_ids = ?self.ref_ids, "quota admission not released");
        }
    }
}

/// A user's usage, counted inside `tx` (which may hold the user's lock).
async fn count(tx: &mut sqlx::PgConnection, owner: &str) -> Result<Usage, sqlx::Error> {
    let since = Utc::now() - UNREFLECTED_WINDOW;
    let day = Utc::now() - chrono::Duration::days(1);
    let (in_flight, today): (i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM jobs WHERE owner = $1 AND status IN ($2, $3))
           + (SELECT count(*) FROM quota_admissions a
              WHERE a.owner = $1 AND a.kind = 'job' AND a.admitted_at > $4
                AND NOT EXISTS (SELECT 1 FROM jobs j
                                WHERE j.job_id = a.ref_id AND j.updated_at >= a.admitted_at)),
           (SELECT count(*) FROM quota_admissions
            WHERE owner = $1 AND kind = 'job' AND admitted_at > $5)",
    )
    .bind(owner)
    .bind(JobStatus::Queued.as_str())
    .bind(JobStatus::Running.as_str())
    .bind(since)
    .bind(day)
    .fetch_one(&mut *tx)
    .await?;
    // A file's bytes count once: its row when it has one (pending rows reserve the declared
    // size), else the admission the read model does not show yet.
    let (stored, pending): (i64, i64) = sqlx::query_as(
        "SELECT
           COALESCE((SELECT sum(size) FROM files WHERE owner = $1 AND status <> $2), 0)::bigint
           + COALESCE((SELECT sum(CASE WHEN jsonb_typeof(o->'size') = 'number'
                                  THEN LEAST(GREATEST((o->>'size')::numeric, 0), 1e15)
                                  ELSE 0 END)
                       FROM jobs j, jsonb_array_elements(CASE WHEN jsonb_typeof(j.outputs) = 'array'
                                                          THEN j.outputs ELSE '[]' END) o
                       WHERE j.owner = $1), 0)::bigint
           + COALESCE((SELECT sum(a.bytes) FROM quota_admissions a
                       WHERE a.owner = $1 AND a.kind IN ('upload', 'registration')
                         AND a.admitted_at > $3
                         AND NOT EXISTS (SELECT 1 FROM files f WHERE f.file_id = a.ref_id
                           AND (f.status <> $2 OR f.updated_at >= a.admitted_at))), 0)::bigint,
           (SELECT count(*) FROM files WHERE owner = $1 AND status = $4)
           + (SELECT count(*) FROM quota_admissions a
              WHERE a.owner = $1 AND a.kind = 'registration' AND a.admitted_at > $3
                AND NOT EXISTS (SELECT 1 FROM files f WHERE f.file_id = a.ref_id
                                AND f.updated_at >= a.admitted_at))",
    )
    .bind(owner)
    .bind(FileStatus::Deleted.as_str())
    .bind(since)
    .bind(FileStatus::PendingUpload.as_str())
    .fetch_one(&mut *tx)
    .await?;
    Ok(Usage {
        jobs_in_flight: in_flight.max(0) as u64,
        jobs_today: today.max(0) as u64,
        stored_bytes: stored.max(0) as u64,
        pending_uploads: pending.max(0) as u64,
        limits: UsageLimits::default(),
    })
}

/// `owner`'s usage and limits (`GET /me/usage`).
pub(crate) async fn usage(s: &AppState, owner: &str) -> Result<Usage, ApiError> {
    let mut conn = s.db.acquire().await?;
    let mut u = count(&mut conn, owner).await?;
    u.limits = limits(s);
    Ok(u)
}

fn limits(s: &AppState) -> UsageLimits {
    let q = &s.cfg.quota;
    let some = |v: u64| (v > 0).then_some(v);
    UsageLimits {
        jobs_in_flight: some(q.jobs_in_flight),
        jobs_per_day: some(q.jobs_per_day),
        stored_bytes: some(q.stored_bytes),
        pending_uploads: some(q.pending_uploads),
    }
}

/// Refuses an upload before its bytes are read when `owner` is at the storage quota already.
pub(crate) async fn check_storage(s: &AppState, owner: &str) -> Result<(), ApiError> {
    let max = s.cfg.quota.stored_bytes;
    if max == 0 {
        return Ok(());
    }
    let used = usage(s, owner).await?.stored_bytes;
    if used >= max {
        return Err(over_storage(used, 0, max));
    }
    Ok(())
}

fn over_storage(used: u64, more: u64, max: u64) -> ApiError {
    ApiError::StorageQuota(format!(
        "storage quota reached: {used} of {max} bytes used, this needs {more} more; delete \
         songs or ask for a larger quota"
    ))
}

/// Admits `kind` for `owner` (a job `ref_id`, or a file of `bytes`) at `at` (the event's time,
/// or earlier), or refuses it with the limit it would pass.
pub(crate) async fn admit(
    s: &AppState,
    owner: &str,
    kind: Kind,
    ref_id: &str,
    bytes: u64,
    at: DateTime<Utc>,
) -> Result<Admission, ApiError> {
    admit_all(s, owner, kind, vec![ref_id.to_string()], bytes, at).await
}

/// Admits the jobs `job_ids` of one pipeline together at `at`, or none of them: refused when
/// they would take `owner` past a job limit.
pub(crate) async fn admit_jobs(
    s: &AppState,
    owner: &str,
    job_ids: Vec<String>,
    at: DateTime<Utc>,
) -> Result<Admission, ApiError> {
    admit_all(s, owner, Kind::Job, job_ids, 0, at).await
}

async fn admit_all(
    s: &AppState,
    owner: &str,
    kind: Kind,
    ref_ids: Vec<String>,
    bytes: u64,
    at: DateTime<Utc>,
) -> Result<Admission, ApiError> {
    let n = ref_ids.len() as u64;
    let mut tx = s.db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('roar-quota:' || $1, 0))")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    let u = count(&mut tx, owner).await?;
    let q = &s.cfg.quota;
    let over = |limit: u64, used: u64| limit > 0 && used.saturating_add(n) > limit;
    // What a pipeline's refusal adds to the message: its size against the limit.
    let steps = |limit: u64| {
        if n > 1 {
            format!(" (this pipeline has {n} jobs to run; the limit is {limit})")
        } else {
            String::new()
        }
    };
    match kind {
        Kind::Job if over(q.jobs_in_flight, u.jobs_in_flight) => {
            return Err(ApiError::Limit {
                code: "jobs_in_flight",
                message: format!(
                    "{} of your jobs are queued or running, the most allowed at once{}; retry \
                     when one has finished",
                    u.jobs_in_flight,
                    steps(q.jobs_in_flight)
                ),
            })
        }
        Kind::Job if over(q.jobs_per_day, u.jobs_today) => {
            return Err(ApiError::Limit {
                code: "jobs_per_day",
                message: format!(
                    "you requested {} jobs in the last 24 hours, the most allowed{}; retry later",
                    u.jobs_today,
                    steps(q.jobs_per_day)
                ),
            })
        }
        Kind::Registration if over(q.pending_uploads, u.pending_uploads) => {
            return Err(ApiError::Limit {
                code: "pending_uploads",
                message: format!(
                    "{} of your direct uploads are registered and not completed, the most \
                     allowed; complete them or let them expire",
                    u.pending_uploads
                ),
            })
        }
        Kind::Upload | Kind::Registration
            if q.stored_bytes > 0 && u.stored_bytes.saturating_add(bytes) > q.stored_bytes =>
        {
            return Err(over_storage(u.stored_bytes, bytes, q.stored_bytes))
        }
        _ => {}
    }
    sqlx::query(
        "INSERT INTO quota_admissions (owner, kind, ref_id, bytes, admitted_at)
         SELECT $1, $2, r, $4, $5 FROM unnest($3::text[]) AS r",
    )
    .bind(owner)
    .bind(kind.as_str())
    .bind(&ref_ids)
    .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Admission {
        owner: owner.to_string(),
        kind,
        ref_ids,
        at,
    })
}

/// Forgets admissions no limit counts any more (the sweeper calls it).
pub(crate) async fn forget_old(s: &AppState) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM quota_admissions WHERE admitted_at < $1")
        .bind(Utc::now() - chrono::Duration::days(2))
        .execute(&s.db)
        .await?;
    Ok(r.rows_affected())
}
