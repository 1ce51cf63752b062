-- Outbound webhooks (the webhooks crate): registrations written by the API, deliveries by the
-- dispatcher (`roar webhooks`). Neither is derived from the topics: a rebuild leaves them.

-- A user's webhook (job_id NULL: every job of the owner) or one job's `callback_url`.
CREATE TABLE webhook_registrations (
    webhook_id  text PRIMARY KEY,
    owner       text NOT NULL,
    job_id      text,
    url         text NOT NULL,
    -- event filters: `job.completed`, `job.*`, ...
    events      text[] NOT NULL,
    -- `whsec_<base64 key>`: the key receivers verify signatures with.
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX webhook_registrations_owner ON webhook_registrations (owner, created_at);
CREATE INDEX webhook_registrations_job ON webhook_registrations (job_id) WHERE job_id IS NOT NULL;

-- One event for one registration: recorded before the dispatcher's offset moves, retried
-- from here (not by holding the partition) until delivered or out of attempts.
CREATE TABLE webhook_deliveries (
    webhook_id       text NOT NULL REFERENCES webhook_registrations ON DELETE CASCADE,
    -- the `webhook-id` header: the event's id, the same on every attempt.
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    -- the exact body signed and sent.
    body             text NOT NULL,
    -- pending | delivered | failed | refused
    status           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
