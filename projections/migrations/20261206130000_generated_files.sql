-- A generated song (POST /generate): what it is made from (prompt, job_id, model, variation,
-- duration_seconds). NULL for uploads.
ALTER TABLE files ADD COLUMN generation jsonb;
