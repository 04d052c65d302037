-- Listing runs (GET /api/v1/runs, newest first, keyset pages): the schedule that created a run,
-- and the indexes the filters walk in (created_at DESC, id DESC) order. Every listing reads
-- one of these in order and stops after a page (store/run_lists.py says which filter uses
-- which); the task index costs one more entry per version of every run, the others only the
-- runs they hold.

ALTER TABLE runs ADD COLUMN schedule_id text;
CREATE INDEX runs_by_task_created ON runs (environment_id, task_identifier, created_at DESC, id DESC);
CREATE INDEX runs_by_schedule ON runs (schedule_id, created_at DESC, id DESC) WHERE schedule_id IS NOT NULL;
DROP INDEX runs_by_batch;
CREATE INDEX runs_by_batch ON runs (batch_id, created_at DESC, id DESC) WHERE batch_id IS NOT NULL;
