-- The `roar pipeline` process manager's own state (not the read model: `roar projector
-- rebuild` leaves these tables alone). Each change is committed in the transaction that emitted
-- its events, so a redelivered event finds its decision already taken and emits nothing new.
CREATE TABLE manager_pipelines (
    pipeline_id   text PRIMARY KEY,
    file_id       text NOT NULL,
    owner         text NOT NULL,
    request_id    text NOT NULL,
    traceparent   text,
    -- Set once the pipeline is canceled: no waiting step is requested after that.
    cancel_reason text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE manager_steps (
    pipeline_id   text NOT NULL REFERENCES manager_pipelines ON DELETE CASCADE,
    name          text NOT NULL,
    -- The step's place in the request, so decisions are taken in the same order every time.
    position      int NOT NULL,
    job_id        text NOT NULL,
    model         text NOT NULL,
    variation     text NOT NULL,
    model_version text NOT NULL,
    params_json   text NOT NULL,
    input_step    text,
    input_output  text,
    -- waiting | requested | completed | failed | canceled
    state         text NOT NULL,
    -- When the step's job was requested, for the hand-off latency.
    requested_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline_id, name)
);
-- Every terminal job event looks its job up here.
CREATE INDEX manager_steps_job ON manager_steps (job_id);
