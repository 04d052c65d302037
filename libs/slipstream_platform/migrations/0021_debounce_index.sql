-- As in migration 0020, a partial index holds only what its own statements ask for, so that a
-- planner working from statistics taken before a burst cannot use it for another statement.
-- `runs_debounce` held every DELAYED run: with 100,000 delayed runs inserted since the last
-- ANALYZE, the earliest `delayed_until` (`run_store.next_due`, after every promotion of due
-- runs) was read through it, all of it, 20-35 ms a call. (`next_due` now also asks for the
-- first entry in `delayed_until` order, so `runs_delayed` serves it with one entry.) The
-- debounce lookup always names its key: the index now holds debounced runs only, one index
-- entry less for every other delayed run.

DROP INDEX runs_debounce;
CREATE INDEX runs_debounce ON runs (environment_id, task_identifier, debounce_key)
    WHERE status = 'DELAYED' AND debounce_key IS NOT NULL;
