-- Waiting for a batch (batch_trigger_and_wait): one waitpoint per batch, completed when every
-- run of the batch is final. The runs the batch created are found unfinished through their
-- batch_id (one index probe per waiting batch); the runs its items only stood for (an
-- idempotency key that named an existing run) are kept apart, usually none.

ALTER TABLE batches ADD COLUMN cached_run_ids text[] NOT NULL DEFAULT '{}';

ALTER TABLE waitpoints DROP CONSTRAINT waitpoints_type_check;
ALTER TABLE waitpoints ADD CONSTRAINT waitpoints_type_check CHECK (type IN ('DURATION', 'RUN', 'BATCH'));
ALTER TABLE waitpoints ADD COLUMN batch_id text REFERENCES batches (id);
CREATE INDEX waitpoints_pending_batches ON waitpoints (batch_id) WHERE status = 'PENDING' AND type = 'BATCH';

CREATE INDEX runs_unfinished_by_batch ON runs (batch_id)
    WHERE batch_id IS NOT NULL
    AND status NOT IN ('COMPLETED', 'CANCELED', 'FAILED', 'TIMED_OUT', 'CRASHED', 'SYSTEM_FAILURE', 'EXPIRED');
