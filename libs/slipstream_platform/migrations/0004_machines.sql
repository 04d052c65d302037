-- The machine preset a run executes on (its memory limit); NULL until its first attempt.

ALTER TABLE runs ADD COLUMN machine text;
