-- Tasks that workers registered (to validate imperative schedules) and cron schedules.

CREATE TABLE task_definitions (
    environment_id   text NOT NULL REFERENCES environments (id),
    task_identifier  text NOT NULL,
    scheduled        boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment_id, task_identifier)
);

CREATE TABLE schedules (
    id                 text PRIMARY KEY,
    environment_id     text NOT NULL REFERENCES environments (id),
    task_identifier    text NOT NULL,
    type               text NOT NULL CHECK (type IN ('DECLARATIVE', 'IMPERATIVE')),
    cron               text NOT NULL,
    timezone           text NOT NULL DEFAULT 'UTC',
    external_id        text,
    deduplication_key  text NOT NULL,
    active             boolean NOT NULL DEFAULT true,
    next_run_at        timestamptz,
    last_run_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (environment_id, deduplication_key)
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE active;
CREATE INDEX schedules_by_env ON schedules (environment_id, created_at, id);
