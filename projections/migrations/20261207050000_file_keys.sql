-- Per-file data keys (crypto-shredding, projections/src/keys.rs). The orchestrator writes a
-- file's key before the first event it seals with it, so the projector can always open what
-- it reads; deleting the file destroys the key (data_key NULL) and records up to when events of
-- the file are erased (`erased_before`): the projector skips them, live and in a rebuild, so
-- neither rows nor names come back. Written by the API, not the projector: a rebuild moves only
-- the read model's tables and leaves this one where it is.
CREATE TABLE file_keys (
    file_id       text PRIMARY KEY,
    -- 32 random bytes (AES-256-GCM); NULL once destroyed.
    data_key      bytea,
    created_at    timestamptz NOT NULL,
    -- Set by a deletion: events of the file that occurred up to then are gone for good.
    erased_before timestamptz,
    CHECK (data_key IS NULL OR octet_length(data_key) = 32)
);
CREATE INDEX file_keys_erased ON file_keys (erased_before) WHERE erased_before IS NOT NULL;
