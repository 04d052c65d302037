-- A replayed run points at the run it replays (POST /api/v1/runs/{runId}/replay).

ALTER TABLE runs ADD COLUMN replayed_from_run_id text;
