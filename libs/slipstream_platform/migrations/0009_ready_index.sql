-- The ready order of an environment in one index, so that a claim reads its first rows in
-- order whatever task mix it asks for (instead of sorting every queued run).

DROP INDEX IF EXISTS runs_ready;
CREATE INDEX runs_ready ON runs (environment_id, queue_ts, id) WHERE status = 'QUEUED';
CREATE INDEX runs_backing_off ON runs (available_at) WHERE status = 'QUEUED';
