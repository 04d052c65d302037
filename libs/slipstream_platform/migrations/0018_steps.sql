-- Replay-safe steps (`await slipstream.step("charge", fn)`): a step's result is journaled as a
-- completed waitpoint of type STEP at its position, so a resumed or retried run returns it
-- instead of calling the function again.

ALTER TABLE waitpoints DROP CONSTRAINT waitpoints_type_check;
ALTER TABLE waitpoints ADD CONSTRAINT waitpoints_type_check CHECK (type IN ('DURATION', 'RUN', 'BATCH', 'STEP'));
ALTER TABLE waitpoints ADD COLUMN step_name text;
