-- A take without limits or keys writes each run once: QUEUED -> EXECUTING in one UPDATE, with
-- its attempt, instead of the claim's QUEUED -> DEQUEUED and then the start's DEQUEUED ->
-- EXECUTING. Both happened in one transaction, so nobody ever saw the DEQUEUED row; writing it
-- cost a second row version and its five index entries (runs_pkey, runs_env_created,
-- runs_by_task_created, runs_on_worker, runs_holding_slots). Measured with track_functions:
-- a take of one run was 1.15 ms of Postgres (claim 0.46, start 0.52, the composition 0.18).
--
-- The test for the plain path is slipstream_claim's (migration 0031): no queue of the
-- environment limited or paused, no keyed run waiting, and this worker's room cannot take the
-- environment past its base limit. Any other take is claim + start as before (migration
-- 0025), which repeats the few index probes above under the same advisory lock (taken twice
-- by one transaction: once).

CREATE OR REPLACE FUNCTION slipstream_take(text, text, text[], integer, integer[], integer[], text[], text[])
RETURNS TABLE (id text, environment_id text, status text, updated_at timestamptz, task_identifier text,
               payload text, attempt_count integer, max_attempts integer, max_duration integer,
               executed_ms bigint, machine text, queue text, tags text[], created_at timestamptz,
               traceparent text, root_run_id text, depth integer, resuming boolean,
               executed_seconds float8, attempt_id text, metadata text, rated boolean, more boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    ids text[];
    attempts_left integer[];
    durations integer[];
    machines text[];
    rated_ids text[];
    left_more boolean;
    state record;
    w_version text;
    w_current boolean;
    w_region text;
    e_region text;
    start_time timestamptz;
BEGIN
    SELECT w.version, e.current_version IS NULL OR e.current_version = w.version,
           coalesce(w.region, e.default_region), e.default_region
      INTO w_version, w_current, w_region, e_region
      FROM workers w JOIN environments e ON e.id = w.environment_id WHERE w.id = $1;
    -- Nothing ready for this worker: no lock, no counts (as the claim).
    IF NOT EXISTS (SELECT 1 FROM runs WHERE runs.environment_id = $2 AND runs.status = 'QUEUED'
                   AND runs.task_identifier = ANY($3::text[]) AND runs.available_at <= now()
                   AND (runs.locked_version = w_version OR (runs.locked_version IS NULL AND w_current))
                   AND coalesce(runs.region, e_region) = w_region) THEN
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(hashtextextended($2, 3));
    -- The time of the start itself (after the lock), as slipstream_start's.
    start_time := clock_timestamp();
    SELECT (SELECT count(*) FROM runs WHERE runs.environment_id = $2 AND runs.status IN ('DEQUEUED', 'EXECUTING'))
             AS running,
           (SELECT concurrency_limit FROM environments WHERE environments.id = $2) AS base,
           EXISTS (SELECT 1 FROM queues WHERE queues.environment_id = $2 AND (paused
             OR num_nonnulls(concurrency_limit, per_key_limit, rate_limit, per_key_rate_limit) > 0)) AS limited,
           EXISTS (SELECT 1 FROM runs WHERE runs.environment_id = $2 AND runs.status = 'QUEUED'
             AND runs.concurrency_key IS NOT NULL) AS keyed
      INTO state;
    IF NOT state.limited AND NOT state.keyed AND state.running + $4 <= state.base THEN
        RETURN QUERY
        WITH busy AS (SELECT count(*) AS n FROM runs
            WHERE worker_id = $1 AND status IN ('DEQUEUED', 'EXECUTING')),
        picked AS (SELECT id, task_identifier, resume_pending FROM runs
            WHERE environment_id = $2 AND status = 'QUEUED' AND concurrency_key IS NULL
            AND task_identifier = ANY($3::text[]) AND available_at <= now()
            AND (runs.locked_version = w_version OR (runs.locked_version IS NULL AND w_current))
            AND coalesce(runs.region, e_region) = w_region
            AND EXISTS (SELECT 1 FROM workers WHERE id = $1 AND stopped_at IS NULL)
            ORDER BY queue_ts, id LIMIT greatest($4 - (SELECT n FROM busy), 0)
            FOR UPDATE SKIP LOCKED),
        -- What the worker's tasks fill in where the trigger left it open, and an attempt id each.
        req AS (SELECT p.id AS run_id, p.resume_pending AS resuming, coalesce(d.max_attempts, 1) AS max_attempts,
                d.max_duration, coalesce(d.machine, 'small-1x') AS machine,
                $8[row_number() OVER ()] AS attempt_id
            FROM picked p LEFT JOIN unnest($3, $5, $6, $7) AS d(task, max_attempts, max_duration, machine)
              ON d.task = p.task_identifier),
        r AS (UPDATE runs r SET status = 'EXECUTING', worker_id = $1, dequeued_at = now(),
            attempt_count = r.attempt_count + CASE WHEN req.resuming THEN 0 ELSE 1 END,
            resume_pending = false, segment_started_at = start_time,
            started_at = coalesce(r.started_at, start_time), updated_at = start_time,
            max_attempts = coalesce(r.max_attempts, req.max_attempts),
            max_duration = coalesce(r.max_duration, req.max_duration), machine = coalesce(r.machine, req.machine),
            version = coalesce(w_version, r.version), locked_version = coalesce(r.locked_version, w_version)
            FROM req WHERE r.id = req.run_id
            RETURNING r.id, r.environment_id, r.status, r.updated_at, r.task_identifier, r.payload::text AS payload,
              r.attempt_count, r.max_attempts, r.max_duration, r.executed_ms, r.machine, r.queue, r.tags,
              r.created_at, r.traceparent, r.root_run_id, r.depth, req.resuming, req.attempt_id AS new_attempt_id,
              r.metadata::text AS metadata),
        a AS (INSERT INTO attempts (id, run_id, number, status, worker_id, started_at)
            SELECT r.new_attempt_id, r.id, r.attempt_count, 'EXECUTING', $1, start_time FROM r WHERE NOT r.resuming)
        SELECT r.id, r.environment_id, r.status, r.updated_at, r.task_identifier, r.payload, r.attempt_count,
            r.max_attempts, r.max_duration, r.executed_ms, r.machine, r.queue, r.tags, r.created_at,
            r.traceparent, r.root_run_id, r.depth, r.resuming, (r.executed_ms / 1000.0)::float8,
            coalesce((SELECT t.id FROM attempts t WHERE t.run_id = r.id AND t.number = r.attempt_count),
              r.new_attempt_id),
            r.metadata, false, false
        FROM r;
        RETURN;
    END IF;
    -- Limits, keys or the base in reach: the round-robin claim, then the start.
    SELECT array_agg(c.id), array_agg(coalesce(d.max_attempts, 1)), array_agg(d.max_duration),
           array_agg(coalesce(d.machine, 'small-1x')), coalesce(array_agg(c.id) FILTER (WHERE c.rated), '{}'),
           coalesce(bool_or(c.more), false)
      INTO ids, attempts_left, durations, machines, rated_ids, left_more
      FROM slipstream_claim($1, $2, $3, $4) AS c
      LEFT JOIN unnest($3, $5, $6, $7) AS d(task, max_attempts, max_duration, machine)
        ON d.task = c.task_identifier;
    IF ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT s.*, s.id = ANY(rated_ids), left_more
    FROM slipstream_start($1, ids, attempts_left, durations, machines, $8[1:cardinality(ids)]) AS s;
END
$fn$;
