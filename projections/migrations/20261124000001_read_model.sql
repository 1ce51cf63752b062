-- The /status read model. Every row here is derived from the topics and can be rebuilt.

CREATE TABLE files (
    file_id       text PRIMARY KEY,
    owner         text NOT NULL DEFAULT '',
    filename      text NOT NULL DEFAULT '',
    mime          text NOT NULL DEFAULT '',
    size          bigint NOT NULL DEFAULT 0,
    sha256        text NOT NULL DEFAULT '',
    storage_key   text NOT NULL DEFAULT '',
    -- pending_upload | uploaded | ready | failed | deleted
    status        text NOT NULL,
    error_code    text,
    error_message text,
    probe         jsonb,
    request_ids   text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX files_owner_created ON files (owner, created_at DESC, file_id);

CREATE TABLE jobs (
    job_id        text PRIMARY KEY,
    file_id       text NOT NULL,
    owner         text NOT NULL DEFAULT '',
    model         text NOT NULL,
    variation     text NOT NULL,
    model_version text NOT NULL DEFAULT '',
    params        jsonb NOT NULL DEFAULT '{}',
    -- queued | running | completed | failed | canceled
    status        text NOT NULL,
    skipped       boolean NOT NULL DEFAULT false,
    progress      real NOT NULL DEFAULT 0,
    message       text,
    attempt       integer NOT NULL DEFAULT 0,
    error_code    text,
    error_message text,
    retryable     boolean,
    outputs       jsonb NOT NULL DEFAULT '[]',
    request_id    text,
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX jobs_file ON jobs (file_id);
CREATE INDEX jobs_status ON jobs (status, updated_at);

-- Every event applied, in apply order: timelines, audit, SSE resume (seq is the event id).
CREATE TABLE events (
    seq          bigserial PRIMARY KEY,
    topic        text NOT NULL,
    partition    integer NOT NULL,
    "offset"     bigint NOT NULL,
    event_id     text NOT NULL,
    file_id      text NOT NULL,
    job_id       text,
    kind         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    request_id   text NOT NULL,
    body         jsonb NOT NULL,
    UNIQUE (topic, partition, "offset")
);
CREATE INDEX events_file_seq ON events (file_id, seq);

-- The projector's own consumer positions, written in the same transaction as the rows above.
CREATE TABLE projector_offsets (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
