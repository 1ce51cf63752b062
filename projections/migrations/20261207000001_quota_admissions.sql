-- Quota admissions (orchestrator/src/quotas.rs): every job request and upload the API accepted,
-- written before its event, so a user's quota counts it at once on every replica, however far
-- behind the projector is. `jobs_per_day` counts these rows; the other limits count the read
-- model plus the admissions it does not show yet. Written by the API, not the projector: a
-- rebuild leaves it where it is.
CREATE TABLE quota_admissions (
    owner       text NOT NULL,
    -- job | upload | registration
    kind        text NOT NULL,
    -- the job id or file id
    ref_id      text NOT NULL,
    bytes       bigint NOT NULL DEFAULT 0,
    admitted_at timestamptz NOT NULL
);
CREATE INDEX quota_admissions_owner ON quota_admissions (owner, kind, admitted_at);
