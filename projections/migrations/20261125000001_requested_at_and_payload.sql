-- The newest request of a job: a failure older than it was superseded by that request. Lets
-- the state machine decide by time rather than by the arrival order of two topics.
ALTER TABLE jobs ADD COLUMN requested_at timestamptz;

-- The event as it was on the topic (Avro single-object), so a past state can be folded again
-- with the same apply functions ("status as of"). NULL only for rows written before this.
ALTER TABLE events ADD COLUMN payload bytea;
CREATE INDEX events_file_time ON events (file_id, occurred_at);
