-- A cap across all keys of a queue (`per_key_limit` for each key, `concurrency_limit` for
-- the whole queue), rate limits on a queue and per key, the starts those rate limits count,
-- and an index to read each concurrency key's ready runs in order.

ALTER TABLE queues
    ADD COLUMN per_key_limit        integer CHECK (per_key_limit >= 0),
    ADD COLUMN rate_limit           integer CHECK (rate_limit >= 1),
    ADD COLUMN rate_period          double precision CHECK (rate_period > 0),
    ADD COLUMN per_key_rate_limit   integer CHECK (per_key_rate_limit >= 1),
    ADD COLUMN per_key_rate_period  double precision CHECK (per_key_rate_period > 0),
    ADD CONSTRAINT queues_rate_complete CHECK ((rate_limit IS NULL) = (rate_period IS NULL)),
    ADD CONSTRAINT queues_per_key_rate_complete
        CHECK ((per_key_rate_limit IS NULL) = (per_key_rate_period IS NULL));

-- One row per dispatch of a run of a rate-limited queue, written in the claim transaction;
-- rows older than their queue's longest period are pruned by the scheduler's sweeper.
CREATE TABLE queue_starts (
    environment_id   text NOT NULL,
    queue            text NOT NULL,
    concurrency_key  text,
    started_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_starts_window ON queue_starts (environment_id, queue, started_at);

-- The ring of (queue, key) copies with ready runs, each copy's ready runs in order; '' stands
-- for "no key" (keys are never empty).
CREATE INDEX runs_ready_by_key ON runs (environment_id, queue, (coalesce(concurrency_key, '')), queue_ts, id)
    INCLUDE (task_identifier, available_at) WHERE status = 'QUEUED';

-- Where the round-robin of the environment's claims stopped last: the (queue, key) copy
-- that got the last run ('' for no key).
ALTER TABLE environments ADD COLUMN dispatch_queue text, ADD COLUMN dispatch_key text;

-- Whether an environment has ready runs with a concurrency key (they go round-robin by key).
CREATE INDEX runs_ready_keyed ON runs (environment_id) WHERE status = 'QUEUED' AND concurrency_key IS NOT NULL;
