-- Runs triggered from inside a run: the parent, the root of the tree, and the depth.

ALTER TABLE runs ADD COLUMN parent_run_id text REFERENCES runs (id);
ALTER TABLE runs ADD COLUMN root_run_id text REFERENCES runs (id);
ALTER TABLE runs ADD COLUMN depth integer NOT NULL DEFAULT 0;
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
