//! Counting a user's usage for [`super`]'s admissions and `GET /me/usage`. An admission reads
//! only the limits that are on and that its kind can pass, each only up to one past its limit
//! (index scans that stop there: migration `20261207110000_quota_counts.sql`), so its cost under
//! the user's lock does not grow with the user's history; a user without limits is not counted
//! at all.

use chrono::Utc;
use roar_common::config::QuotaConfig;

use super::Kind;
use crate::views::{Usage, UsageLimits};

/// Admissions older than this are reflected in the read model or never will be (their event
/// was lost with its request); they still count for `jobs_per_day`.
const UNREFLECTED_WINDOW: chrono::Duration = chrono::Duration::minutes(10);

/// How far one part of a user's usage is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// Not read at all: its limit is off (0), or the request does not touch it.
    Skip,
    /// Read up to this many rows: a limit needs to know whether it is passed, not by how much,
    /// so the count stops there instead of growing with the user's history.
    UpTo(u64),
    /// Read exactly (`GET /me/usage`).
    Exact,
}

impl Part {
    /// For a limit (0 = off): skipped, or counted up to one past it. A count that stops at
    /// `limit + 1` decides `used + n > limit` exactly for any `n`: below the cap it is exact,
    /// at the cap it is over whatever `n` is.
    fn for_limit(limit: u64) -> Self {
        if limit == 0 {
            Part::Skip
        } else {
            Part::UpTo(limit.saturating_add(1))
        }
    }

    /// The count's SQL `LIMIT`: 0 for a skipped part (PostgreSQL's Limit node then never
    /// starts the scan under it), NULL (no limit) for an exact one.
    fn sql_limit(self) -> Option<i64> {
        match self {
            Part::Skip => Some(0),
            Part::UpTo(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
            Part::Exact => None,
        }
    }

    /// A sum of counts, each capped, brought back under the cap.
    fn clamp(self, n: i64) -> u64 {
        let n = n.max(0) as u64;
        match self {
            Part::UpTo(cap) => n.min(cap),
            Part::Skip | Part::Exact => n,
        }
    }
}

/// Which parts of a user's usage one count reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    jobs_in_flight: Part,
    jobs_today: Part,
    pending_uploads: Part,
    /// A sum of sizes (it cannot stop early): read only when `quota.stored_bytes` is on.
    stored_bytes: bool,
}

impl Plan {
    /// Everything, exactly (`GET /me/usage`).
    pub(super) const EXACT: Plan = Plan {
        jobs_in_flight: Part::Exact,
        jobs_today: Part::Exact,
        pending_uploads: Part::Exact,
        stored_bytes: true,
    };

    /// What admitting `kind` must read under the user's lock: only the limits that are on and
    /// that `kind` can pass, each up to one past its limit.
    pub(super) fn admission(kind: Kind, q: &QuotaConfig) -> Plan {
        let mut plan = Plan {
            jobs_in_flight: Part::Skip,
            jobs_today: Part::Skip,
            pending_uploads: Part::Skip,
            stored_bytes: false,
        };
        match kind {
            Kind::Job => {
                plan.jobs_in_flight = Part::for_limit(q.jobs_in_flight);
                plan.jobs_today = Part::for_limit(q.jobs_per_day);
            }
            Kind::Registration => {
                plan.pending_uploads = Part::for_limit(q.pending_uploads);
                plan.stored_bytes = q.stored_bytes > 0;
            }
            Kind::Upload => plan.stored_bytes = q.stored_bytes > 0,
        }
        plan
    }

    /// Whether the count reads anything: when not, an admission needs neither the user's lock
    /// nor a transaction (nothing it writes depends on what others wrote).
    pub(super) fn reads_anything(&self) -> bool {
        self.jobs_in_flight != Part::Skip
            || self.jobs_today != Part::Skip
            || self.pending_uploads != Part::Skip
            || self.stored_bytes
    }
}

/// Jobs in flight (the read model's queued and running jobs, plus the job admissions it does
/// not reflect yet) and job admissions of the last day, each up to its `LIMIT`. The statuses
/// are literals so that the partial index `jobs_owner_in_flight` serves the first count in a
/// generic plan too. Checked against the schema's vocabulary by a test.
const JOB_COUNTS: &str = "SELECT
       (SELECT count(*) FROM (SELECT 1 FROM jobs
                              WHERE owner = $1 AND status IN ('queued', 'running')
                              LIMIT $2) j)
       + (SELECT count(*) FROM (SELECT 1 FROM quota_admissions a
                                WHERE a.owner = $1 AND a.kind = 'job' AND a.admitted_at > $3
                                  AND NOT EXISTS (SELECT 1 FROM jobs j
                                                  WHERE j.job_id = a.ref_id
                                                    AND j.updated_at >= a.admitted_at)
                                LIMIT $2) u),
       (SELECT count(*) FROM (SELECT 1 FROM quota_admissions
                              WHERE owner = $1 AND kind = 'job' AND admitted_at > $4
                              LIMIT $5) d)";

/// Direct uploads registered and not completed: pending rows (partial index
/// `files_owner_pending`) plus the registrations the read model does not show yet.
const PENDING_UPLOADS: &str = "SELECT
       (SELECT count(*) FROM (SELECT 1 FROM files
                              WHERE owner = $1 AND status = 'pending_upload'
                              LIMIT $2) p)
       + (SELECT count(*) FROM (SELECT 1 FROM quota_admissions a
                                WHERE a.owner = $1 AND a.kind = 'registration'
                                  AND a.admitted_at > $3
                                  AND NOT EXISTS (SELECT 1 FROM files f
                                                  WHERE f.file_id = a.ref_id
                                                    AND f.updated_at >= a.admitted_at)
                                LIMIT $2) u)";

/// Bytes stored. A file's bytes count once: its row when it has one (pending rows reserve the
/// declared size), else the admission the read model does not show yet.
const STORED_BYTES: &str = "SELECT
       COALESCE((SELECT sum(size) FROM files WHERE owner = $1 AND status <> 'deleted'), 0)::bigint
       + COALESCE((SELECT sum(CASE WHEN jsonb_typeof(o->'size') = 'number'
                              THEN LEAST(GREATEST((o->>'size')::numeric, 0), 1e15)
                              ELSE 0 END)
                   FROM jobs j, jsonb_array_elements(CASE WHEN jsonb_typeof(j.outputs) = 'array'
                                                      THEN j.outputs ELSE '[]' END) o
                   WHERE j.owner = $1), 0)::bigint
       + COALESCE((SELECT sum(a.bytes) FROM quota_admissions a
                   WHERE a.owner = $1 AND a.kind IN ('upload', 'registration')
                     AND a.admitted_at > $2
                     AND NOT EXISTS (SELECT 1 FROM files f WHERE f.file_id = a.ref_id
                       AND (f.status <> 'deleted' OR f.updated_at >= a.admitted_at))), 0)::bigint";

/// The parts of `owner`'s usage that `plan` reads, counted on `conn` (which may hold the
/// user's lock); the others are 0.
pub(super) async fn count(
    conn: &mut sqlx::PgConnection,
    owner: &str,
    plan: Plan,
) -> Result<Usage, sqlx::Error> {
    let since = Utc::now() - UNREFLECTED_WINDOW;
    let day = Utc::now() - chrono::Duration::days(1);
    let mut u = Usage {
        jobs_in_flight: 0,
        jobs_today: 0,
        stored_bytes: 0,
        pending_uploads: 0,
        limits: UsageLimits::default(),
    };
    if plan.jobs_in_flight != Part::Skip || plan.jobs_today != Part::Skip {
        let (in_flight, today): (i64, i64) = sqlx::query_as(JOB_COUNTS)
            .bind(owner)
            .bind(plan.jobs_in_flight.sql_limit())
            .bind(since)
            .bind(day)
            .bind(plan.jobs_today.sql_limit())
            .fetch_one(&mut *conn)
            .await?;
        u.jobs_in_flight = plan.jobs_in_flight.clamp(in_flight);
        u.jobs_today = plan.jobs_today.clamp(today);
    }
    if plan.pending_uploads != Part::Skip {
        let (pending,): (i64,) = sqlx::query_as(PENDING_UPLOADS)
            .bind(owner)
            .bind(plan.pending_uploads.sql_limit())
            .bind(since)
            .fetch_one(&mut *conn)
            .await?;
        u.pending_uploads = plan.pending_uploads.clamp(pending);
    }
    if plan.stored_bytes {
        let (stored,): (i64,) = sqlx::query_as(STORED_BYTES)
            .bind(owner)
            .bind(since)
            .fetch_one(&mut *conn)
            .await?;
        u.stored_bytes = stored.max(0) as u64;
    }
    Ok(u)
}

#[cfg(test)]
pub(super) mod tests {
    use roar_schemas::{FileStatus, JobStatus};

    use super::*;

    /// Every limit off (the defaults have them on).
    pub(in crate::quotas) fn off() -> QuotaConfig {
        QuotaConfig {
            jobs_in_flight: 0,
            jobs_per_day: 0,
            stored_bytes: 0,
            pending_uploads: 0,
        }
    }

    #[test]
    fn a_user_without_limits_is_admitted_without_lock_or_count() {
        for kind in [Kind::Job, Kind::Upload, Kind::Registration] {
            let plan = Plan::admission(kind, &off());
            assert!(!plan.reads_anything(), "{kind:?}: {plan:?}");
        }
    }

    #[test]
    fn only_the_limits_that_are_on_are_counted_and_only_up_to_one_past_them() {
        let q = QuotaConfig {
            jobs_per_day: 0,
            ..QuotaConfig::default()
        };
        let job = Plan::admission(Kind::Job, &q);
        assert_eq!(job.jobs_in_flight, Part::UpTo(q.jobs_in_flight + 1));
        assert_eq!(job.jobs_today, Part::Skip, "jobs_per_day is off");
        assert_eq!((job.pending_uploads, job.stored_bytes), (Part::Skip, false));
        let reg = Plan::admission(Kind::Registration, &q);
        assert_eq!(reg.pending_uploads, Part::UpTo(q.pending_uploads + 1));
        assert!(reg.stored_bytes);
        assert_eq!(
            (reg.jobs_in_flight, reg.jobs_today),
            (Part::Skip, Part::Skip)
        );
        let upload = Plan::admission(
            Kind::Upload,
            &QuotaConfig {
                stored_bytes: 0,
                ..q
            },
        );
        assert!(!upload.reads_anything(), "{upload:?}");
        // A skipped part is LIMIT 0 (never scanned), an exact one has no LIMIT.
        assert_eq!(Part::Skip.sql_limit(), Some(0));
        assert_eq!(Part::Exact.sql_limit(), None);
        assert_eq!(Part::UpTo(u64::MAX).sql_limit(), Some(i64::MAX));
    }

    #[test]
    fn a_capped_count_decides_every_request_as_the_exact_one_would() {
        let limit = 3;
        let part = Part::for_limit(limit);
        for used in 0..10u64 {
            // Two capped sub-counts (read model + unreflected admissions), summed and clamped.
            for split in 0..=used {
                let capped = |c: u64| c.min(limit + 1) as i64;
                let seen = part.clamp(capped(split) + capped(used - split));
                for n in 0..5 {
                    assert_eq!(
                        seen + n > limit,
                        used + n > limit,
                        "used {used} ({split} + {}), n {n}",
                        used - split
                    );
                }
            }
        }
    }

    #[test]
    fn the_literal_statuses_in_the_counts_are_the_vocabularys() {
        let in_flight = format!(
            "status IN ('{}', '{}')",
            JobStatus::Queued.as_str(),
            JobStatus::Running.as_str()
        );
        assert!(JOB_COUNTS.contains(&in_flight), "{in_flight}");
        let pending = format!("status = '{}'", FileStatus::PendingUpload.as_str());
        assert!(PENDING_UPLOADS.contains(&pending), "{pending}");
        let deleted = format!("status <> '{}'", FileStatus::Deleted.as_str());
        assert!(STORED_BYTES.contains(&deleted), "{deleted}");
        // The partial indexes' predicates (migration 20261207110000) are the same literals.
        let migration =
            include_str!("../../../projections/migrations/20261207110000_quota_counts.sql");
        assert!(migration.contains(&in_flight) && migration.contains(&pending));
    }
}
