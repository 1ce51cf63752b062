-- Direct uploads registered by the API (orchestrator/src/routes/presign.rs): who registered
-- the file, its name and type, written before the ticket is answered. The local store's signed
-- PUT link names none of them (its claims are readable by whoever holds the link); the PUT reads
-- them here, at once, however far behind the projector is. Written by the API, not the
-- projector (a rebuild leaves it); the sweeper removes expired rows.
CREATE TABLE upload_registrations (
    file_id       text PRIMARY KEY,
    owner         text NOT NULL,
    filename      text NOT NULL,
    mime          text NOT NULL,
    size          bigint NOT NULL,
    sha256        text NOT NULL,
    registered_at timestamptz NOT NULL
);
