-- A preset's or a chained request's `callback_url`: one registration for every job of the
-- pipeline it started (`job_ids`, known when the request is taken), and its end: `ended` maps
-- each of those jobs to how it ended, so the dispatcher sees when the last one has, on the
-- events it consumes (the pipeline's end is not an event of its own).
ALTER TABLE webhook_registrations
    ADD COLUMN pipeline_id text,
    ADD COLUMN job_ids text[] NOT NULL DEFAULT '{}',
    ADD COLUMN ended jsonb NOT NULL DEFAULT '{}';
CREATE INDEX webhook_registrations_job_ids ON webhook_registrations USING gin (job_ids);
