-- Idempotency keys (one live run per environment, task and key) and debounced delayed runs.

ALTER TABLE runs ADD COLUMN idempotency_key text;
ALTER TABLE runs ADD COLUMN debounce_key text;
-- A debounced run is never pushed past this (first trigger + maxDelay).
ALTER TABLE runs ADD COLUMN debounce_deadline timestamptz;
CREATE INDEX runs_debounce ON runs (environment_id, task_identifier, debounce_key) WHERE status = 'DELAYED';

CREATE TABLE idempotency_keys (
    environment_id   text NOT NULL REFERENCES environments (id),
    task_identifier  text NOT NULL,
    key              text NOT NULL,
    run_id           text NOT NULL REFERENCES runs (id),
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (environment_id, task_identifier, key)
);
