-- The SDK's request id on the run it created: a retried request finds that run by its id
-- (one INSERT ... ON CONFLICT instead of a locked idempotency-key lookup).

ALTER TABLE runs ADD COLUMN request_id text;
CREATE UNIQUE INDEX runs_by_request_id ON runs (environment_id, request_id) WHERE request_id IS NOT NULL;
