-- Queues and their concurrency limits (declared in code, registered by workers), the
-- environment's burst factor, and an index over the runs that hold a slot.

CREATE TABLE queues (
    environment_id     text NOT NULL REFERENCES environments (id),
    name               text NOT NULL,
    concurrency_limit  integer CHECK (concurrency_limit >= 0),
    paused             boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment_id, name)
);
ALTER TABLE task_definitions ADD COLUMN queue text;
ALTER TABLE environments ADD COLUMN burst_factor real NOT NULL DEFAULT 2.0 CHECK (burst_factor >= 1);
CREATE INDEX runs_holding_slots ON runs (environment_id, queue, concurrency_key)
    WHERE status IN ('DEQUEUED', 'EXECUTING');
