-- The walking skeleton's schema: projects and environments (with their secret keys),
-- connected workers, runs and attempts. Postgres is the truth for every run.

CREATE TABLE projects (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE environments (
    id                 text PRIMARY KEY,
    project_id         text NOT NULL REFERENCES projects (id),
    type               text NOT NULL CHECK (type IN ('DEVELOPMENT', 'STAGING', 'PRODUCTION', 'PREVIEW')),
    api_key            text NOT NULL UNIQUE,
    concurrency_limit  integer NOT NULL DEFAULT 100 CHECK (concurrency_limit > 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, type)
);

-- One row per supervisor process: the tasks it serves and how many attempts it runs at once.
CREATE TABLE workers (
    id              text PRIMARY KEY,
    environment_id  text NOT NULL REFERENCES environments (id),
    task_ids        text[] NOT NULL,
    manifest        jsonb NOT NULL,
    capacity        integer NOT NULL CHECK (capacity > 0),
    version         text NOT NULL,
    hostname        text NOT NULL DEFAULT '',
    started_at      timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    stopped_at      timestamptz
);
CREATE INDEX workers_live ON workers (environment_id) WHERE stopped_at IS NULL;

CREATE TABLE runs (
    id               text PRIMARY KEY,
    environment_id   text NOT NULL REFERENCES environments (id),
    task_identifier  text NOT NULL,
    status           text NOT NULL,
    payload          jsonb,
    output           jsonb,
    error            jsonb,
    tags             text[] NOT NULL DEFAULT '{}',
    metadata         jsonb,
    version          text,
    queue            text NOT NULL,
    concurrency_key  text,
    max_attempts     integer,
    priority_ms      bigint NOT NULL DEFAULT 0,
    attempt_count    integer NOT NULL DEFAULT 0,
    worker_id        text,
    traceparent      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- The ready order: earlier first; priority moves a run earlier.
    queue_ts         timestamptz NOT NULL DEFAULT now(),
    -- A QUEUED run is not dispatched before this (retry back-off).
    available_at     timestamptz NOT NULL DEFAULT now(),
    delayed_until    timestamptz,
    dequeued_at      timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz
);
CREATE INDEX runs_ready ON runs (environment_id, task_identifier, queue_ts, id) WHERE status = 'QUEUED';
CREATE INDEX runs_pending_version ON runs (environment_id, task_identifier) WHERE status = 'PENDING_VERSION';
CREATE INDEX runs_delayed ON runs (delayed_until) WHERE status = 'DELAYED';
CREATE INDEX runs_on_worker ON runs (worker_id) WHERE status IN ('DEQUEUED', 'EXECUTING');
CREATE INDEX runs_env_created ON runs (environment_id, created_at DESC, id DESC);

CREATE TABLE attempts (
    id           text PRIMARY KEY,
    run_id       text NOT NULL REFERENCES runs (id),
    number       integer NOT NULL,
    status       text NOT NULL CHECK (status IN ('EXECUTING', 'COMPLETED', 'FAILED', 'CRASHED', 'CANCELED')),
    worker_id    text NOT NULL,
    error        jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    UNIQUE (run_id, number)
);
