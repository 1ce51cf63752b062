-- Dead letters an operator put back on their source topic (`roar dlq redrive`,
-- `POST /admin/dlq/{id}/redrive`): one row per letter, so a re-drive happens once however often
-- it is asked for. It records an operator's action, not an event, so `roar projector rebuild`
-- leaves it where it is.
CREATE TABLE dead_letter_redrives (
    letter_id text PRIMARY KEY,
    redriven_at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    topic text NOT NULL,
    "partition" integer NOT NULL,
    "offset" bigint NOT NULL
);
