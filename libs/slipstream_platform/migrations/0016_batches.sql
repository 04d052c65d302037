-- Batches (issue 10): one request that triggers many runs. A batch keeps its runs' ids in the
-- order of its items (an item may stand for an existing run, by its idempotency key, so the
-- runs' own `batch_id` marks only the runs the batch created). Its status is derived from
-- those runs when it is read.

CREATE TABLE batches (
    id                     text PRIMARY KEY,
    environment_id         text NOT NULL REFERENCES environments (id),
    -- The task of every item (POST /api/v1/tasks/{taskId}/batch); NULL for a mixed batch.
    task_identifier        text,
    run_ids                text[] NOT NULL,
    parent_run_id          text,
    idempotency_key        text,
    idempotency_expires_at timestamptz,
    request_id             text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX batches_by_request_id ON batches (environment_id, request_id) WHERE request_id IS NOT NULL;
CREATE UNIQUE INDEX batches_by_idempotency_key ON batches (environment_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

ALTER TABLE runs ADD COLUMN batch_id text;
CREATE INDEX runs_by_batch ON runs (batch_id) WHERE batch_id IS NOT NULL;
