-- Read-your-writes for uploads (orchestrator/src/uploads.rs): the orchestrator claims a
-- content's file id here before it emits the upload, so a repeat is refused as a duplicate at
-- once, however far behind the projector is. Written by the API, not by the projector: a
-- rebuild leaves it where it is.
CREATE TABLE upload_claims (
    file_id text PRIMARY KEY,
    claimed_at timestamptz NOT NULL,
    -- The FileUploaded event's consistency token; NULL while the upload is being accepted.
    token text
);
