-- Webhook signing secrets sealed at rest (roar-webhooks' `seal`): AES-256-GCM under
-- `webhooks.secret_key`, whose id is kept beside the ciphertext so the key can rotate. Rows
-- written before this keep their clear `secret` until the dispatcher, which holds the key,
-- seals them (at its start and every ten minutes), then the clear column is NULL.
ALTER TABLE webhook_registrations
    ALTER COLUMN secret DROP NOT NULL,
    ADD COLUMN secret_key_id text,
    ADD COLUMN secret_sealed bytea,
    ADD CONSTRAINT webhook_registrations_secret_kept CHECK (
        secret IS NOT NULL OR (secret_key_id IS NOT NULL AND secret_sealed IS NOT NULL)
    );
