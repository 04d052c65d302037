-- Structured log lines written by `logger` inside attempts, and a run's max_duration.

ALTER TABLE runs ADD COLUMN max_duration integer CHECK (max_duration > 0);

CREATE TABLE run_logs (
    id              bigserial PRIMARY KEY,
    run_id          text NOT NULL REFERENCES runs (id),
    attempt_number  integer NOT NULL,
    level           text NOT NULL,
    message         text NOT NULL,
    attributes      jsonb NOT NULL DEFAULT '{}',
    logged_at       timestamptz NOT NULL
);
CREATE INDEX run_logs_by_run ON run_logs (run_id, id);
