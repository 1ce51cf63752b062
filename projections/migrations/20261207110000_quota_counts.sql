-- Quota admission (orchestrator/src/quotas.rs) counts, under the user's advisory lock, the
-- user's jobs in flight and pending direct uploads, each only up to one past its limit. These
-- partial indexes hold only the rows those counts read, so each count is an index scan that
-- stops at the limit, whatever the user's history (before: a scan of every job, 12.9 ms at
-- 20,000 queued jobs, serialised by the lock). The statuses are the literals the queries use.
CREATE INDEX jobs_owner_in_flight ON jobs (owner) WHERE status IN ('queued', 'running');
CREATE INDEX files_owner_pending ON files (owner) WHERE status = 'pending_upload';
