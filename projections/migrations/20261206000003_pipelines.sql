-- Pipelines (roar.pipelines.v1): jobs on one file where a step reads another step's output.
-- Like every table here, derived from the topics and rebuilt by `roar projector rebuild`.
CREATE TABLE pipelines (
    pipeline_id   text PRIMARY KEY,
    file_id       text NOT NULL,
    owner         text NOT NULL,
    preset        text,
    request_id    text,
    created_at    timestamptz NOT NULL,
    canceled_at   timestamptz,
    cancel_reason text
);
CREATE INDEX pipelines_file ON pipelines (file_id, created_at);

CREATE TABLE pipeline_steps (
    pipeline_id   text NOT NULL,
    name          text NOT NULL,
    -- the step's place in the PipelineRequested (upstream steps first)
    position      integer NOT NULL,
    job_id        text NOT NULL,
    model         text NOT NULL,
    variation     text NOT NULL,
    input_step    text,
    input_output  text,
    PRIMARY KEY (pipeline_id, name)
);
CREATE INDEX pipeline_steps_job ON pipeline_steps (job_id);

-- What a job reads: NULL for the upload, else one output of another job (JobRequested v2's
-- input), so a retry asks for the same job.
ALTER TABLE jobs ADD COLUMN input_job_id text;
ALTER TABLE jobs ADD COLUMN input_model text;
ALTER TABLE jobs ADD COLUMN input_variation text;
ALTER TABLE jobs ADD COLUMN input_output text;
