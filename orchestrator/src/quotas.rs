//! Per-user quotas (`quota.*`): jobs in flight, jobs per day, stored bytes, pending direct
//! uploads. The read model alone lags the topics, so a burst of requests would all pass the
//! same stale count; every accepted job request and upload is therefore admitted first:
//!
//! - under a per-user advisory lock (one admission of a user at a time, on every replica), the
//!   usage is counted: the read model plus the admissions it does not reflect yet, only for
//!   the limits that are on and only up to one past each ([`counts`]); with no limit on for
//!   the request's kind there is nothing to count and neither lock nor transaction is taken;
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
use roar_common::config::QuotaConfig;

mod counts;

use counts::{count, Plan};

use crate::views::{Usage, UsageLimits};
use crate::{ApiError, AppState};

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

/// `owner`'s usage and limits (`GET /me/usage`).
pub(crate) async fn usage(s: &AppState, owner: &str) -> Result<Usage, ApiError> {
    let mut conn = s.db.acquire().await?;
    let mut u = count(&mut conn, owner, Plan::EXACT).await?;
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
    let mut conn = s.db.acquire().await?;
    let only_bytes = Plan::admission(Kind::Upload, &s.cfg.quota);
    let used = count(&mut conn, owner, only_bytes).await?.stored_bytes;
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
    let plan = Plan::admission(kind, &s.cfg.quota);
    if !plan.reads_anything() {
        // No limit of this kind is on: nothing to count, so nothing to serialise. The row is
        // still written, so that `GET /me/usage` and a limit turned on later count it.
        record(
            &mut *s.db.acquire().await?,
            owner,
            kind,
            &ref_ids,
            bytes,
            at,
        )
        .await?;
        return Ok(Admission {
            owner: owner.to_string(),
            kind,
            ref_ids,
            at,
        });
    }
    let n = ref_ids.len() as u64;
    // The lock makes count-then-write atomic per user: it is all this transaction holds.
    let mut tx = s.db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('roar-quota:' || $1, 0))")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    let u = count(&mut tx, owner, plan).await?;
    refuse_over(&s.cfg.quota, kind, &u, n, bytes)?;
    record(&mut tx, owner, kind, &ref_ids, bytes, at).await?;
    tx.commit().await?;
    Ok(Admission {
        owner: owner.to_string(),
        kind,
        ref_ids,
        at,
    })
}

/// Writes the admission rows of `ref_ids`.
async fn record(
    conn: &mut sqlx::PgConnection,
    owner: &str,
    kind: Kind,
    ref_ids: &[String],
    bytes: u64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO quota_admissions (owner, kind, ref_id, bytes, admitted_at)
         SELECT $1, $2, r, $4, $5 FROM unnest($3::text[]) AS r",
    )
    .bind(owner)
    .bind(kind.as_str())
    .bind(ref_ids)
    .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The refusal for `n` more of `kind` (or `bytes` more) on top of `u`, if it passes a limit.
/// A count read up to one past its limit shows as "more than" the limit.
fn refuse_over(q: &QuotaConfig, kind: Kind, u: &Usage, n: u64, bytes: u64) -> Result<(), ApiError> {
    let over = |limit: u64, used: u64| limit > 0 && used.saturating_add(n) > limit;
    let shown = |limit: u64, used: u64| {
        if used > limit {
            format!("more than {limit}")
        } else {
            used.to_string()
        }
    };
    // What a pipeline's refusal adds to the message: its size against the limit.
    let steps = |limit: u64| {
        if n > 1 {
            format!(" (this pipeline has {n} jobs to run; the limit is {limit})")
        } else {
            String::new()
        }
    };
    match kind {
        Kind::Job if over(q.jobs_in_flight, u.jobs_in_flight) => Err(ApiError::Limit {
            code: "jobs_in_flight",
            message: format!(
                "{} of your jobs are queued or running, the most allowed at once{}; retry when \
                 one has finished",
                shown(q.jobs_in_flight, u.jobs_in_flight),
                steps(q.jobs_in_flight)
            ),
        }),
        Kind::Job if over(q.jobs_per_day, u.jobs_today) => Err(ApiError::Limit {
            code: "jobs_per_day",
            message: format!(
                "you requested {} jobs in the last 24 hours, the most allowed{}; retry later",
                shown(q.jobs_per_day, u.jobs_today),
                steps(q.jobs_per_day)
            ),
        }),
        Kind::Registration if over(q.pending_uploads, u.pending_uploads) => Err(ApiError::Limit {
            code: "pending_uploads",
            message: format!(
                "{} of your direct uploads are registered and not completed, the most \
                 allowed; complete them or let them expire",
                shown(q.pending_uploads, u.pending_uploads)
            ),
        }),
        Kind::Upload | Kind::Registration
            if q.stored_bytes > 0 && u.stored_bytes.saturating_add(bytes) > q.stored_bytes =>
        {
            Err(over_storage(u.stored_bytes, bytes, q.stored_bytes))
        }
        _ => Ok(()),
    }
}

/// Forgets admissions no limit counts any more (the sweeper calls it).
pub(crate) async fn forget_old(s: &AppState) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM quota_admissions WHERE admitted_at < $1")
        .bind(Utc::now() - chrono::Duration::days(2))
        .execute(&s.db)
        .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::counts::tests::off;
    use super::*;

    #[test]
    fn the_refusal_says_more_than_the_limit_for_a_count_at_its_cap() {
        let q = QuotaConfig {
            jobs_in_flight: 2,
            ..off()
        };
        let u = Usage {
            jobs_in_flight: 3,
            jobs_today: 0,
            stored_bytes: 0,
            pending_uploads: 0,
            limits: UsageLimits::default(),
        };
        match refuse_over(&q, Kind::Job, &u, 1, 0) {
            Err(ApiError::Limit { code, message }) => {
                assert_eq!(code, "jobs_in_flight");
                assert!(message.starts_with("more than 2 of your jobs"), "{message}");
            }
            other => panic!("not refused: {:?}", other.err()),
        }
        assert!(refuse_over(
            &q,
            Kind::Job,
            &Usage {
                jobs_in_flight: 1,
                ..u
            },
            1,
            0
        )
        .is_ok());
    }
}
