-- How the step jobs of a pipeline ended, for users' own webhooks (`POST /webhooks`, no job)
-- that take `pipeline.*` events: the dispatcher records a row as it consumes a step job's
-- terminal event (only while the owner holds such a webhook), and once every step of the
-- pipeline (`pipeline_steps`) has one, it records the pipeline's end for those webhooks. The
-- end is not an event of its own. Ids only; swept with the deliveries
-- (`webhooks.retention_days`). Written by the dispatcher: a rebuild leaves it where it is.
CREATE TABLE webhook_pipeline_ends (
    pipeline_id text NOT NULL,
    job_id      text NOT NULL,
    ended       text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline_id, job_id)
);
CREATE INDEX webhook_pipeline_ends_recorded ON webhook_pipeline_ends (recorded_at);
