-- Time-to-live of runs that have not started: counted from when the run is enqueued.

ALTER TABLE runs ADD COLUMN ttl_seconds integer CHECK (ttl_seconds > 0);
ALTER TABLE runs ADD COLUMN expires_at timestamptz;
ALTER TABLE runs ADD COLUMN expired_at timestamptz;
CREATE INDEX runs_expiring ON runs (expires_at)
    WHERE status IN ('QUEUED', 'PENDING_VERSION') AND attempt_count = 0;
