-- Waitpoints: where a run suspended (a duration, or a child run it waits for). A resumed run
-- replays its task function, and each completed waitpoint returns at once from the journal.

CREATE TABLE waitpoints (
    id              text PRIMARY KEY,
    run_id          text NOT NULL REFERENCES runs (id),
    seq             integer NOT NULL,
    type            text NOT NULL CHECK (type IN ('DURATION', 'RUN')),
    resume_at       timestamptz,
    child_run_id    text REFERENCES runs (id),
    status          text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'COMPLETED')),
    result          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    UNIQUE (run_id, seq)
);
CREATE INDEX waitpoints_pending_at ON waitpoints (resume_at) WHERE status = 'PENDING' AND type = 'DURATION';
CREATE INDEX waitpoints_pending_runs ON waitpoints (child_run_id) WHERE status = 'PENDING' AND type = 'RUN';

-- A WAITING run that is resumed continues its attempt instead of starting a new one.
ALTER TABLE runs ADD COLUMN resume_pending boolean NOT NULL DEFAULT false;
-- Executing time so far (what max_duration limits), and when the current stretch began.
ALTER TABLE runs ADD COLUMN executed_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN segment_started_at timestamptz;
