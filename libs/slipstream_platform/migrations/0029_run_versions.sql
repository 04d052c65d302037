-- Every started run records the version of the worker that runs it (`runs.version`, shown by
-- the run and `filter[version]` in runs.list): a supervisor registers under `worker --version`
-- or, by default, a hash of its task module's source. A retry or a resume on a worker of
-- another version records that version. slipstream_start is 0025's with that one column set.

CREATE OR REPLACE FUNCTION slipstream_start(text, text[], integer[], integer[], text[], text[])
RETURNS TABLE (id text, environment_id text, status text, updated_at timestamptz, task_identifier text,
               payload text, attempt_count integer, max_attempts integer, max_duration integer,
               executed_ms bigint, machine text, queue text, tags text[], created_at timestamptz,
               traceparent text, root_run_id text, depth integer, resuming boolean,
               executed_seconds float8, attempt_id text, metadata text)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    -- The time of the start itself, not of its transaction: in a take, the transaction began
    -- before the claim waited for the environment's lock, perhaps while the attempt whose
    -- slot this run takes was still ending.
    start_time timestamptz := clock_timestamp();
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH req AS (SELECT * FROM unnest($2, $3, $4, $5, $6)
        AS q(run_id, max_attempts, max_duration, machine, attempt_id)),
    -- `id = ANY(...)` as well as the join: the plan reads the runs by primary key, however
    -- many it expects the arrays to hold.
    prev AS (SELECT id, resume_pending AS resuming FROM runs WHERE id = ANY($2)),
    r AS (UPDATE runs r SET status = 'EXECUTING',
        attempt_count = r.attempt_count + CASE WHEN r.resume_pending THEN 0 ELSE 1 END,
        resume_pending = false, segment_started_at = start_time,
        started_at = coalesce(r.started_at, start_time), updated_at = start_time,
        max_attempts = coalesce(r.max_attempts, req.max_attempts),
        max_duration = coalesce(r.max_duration, req.max_duration), machine = coalesce(r.machine, req.machine),
        -- The version of the worker that runs this attempt (its task code's, or `worker --version`).
        version = coalesce((SELECT w.version FROM workers w WHERE w.id = $1), r.version)
        -- The worker is checked on the row, not through runs_on_worker: that index holds an
        -- entry for every run the worker started since the last vacuum.
        FROM req WHERE r.id = req.run_id AND r.id = ANY($2) AND r.status = 'DEQUEUED'
        AND coalesce(r.worker_id, '') = $1
        RETURNING r.id, r.environment_id, r.status, r.updated_at, r.task_identifier, r.payload::text AS payload,
          r.attempt_count, r.max_attempts, r.max_duration, r.executed_ms, r.machine, r.queue, r.tags,
          r.created_at, r.traceparent, r.root_run_id, r.depth, req.attempt_id AS new_attempt_id,
          r.metadata::text AS metadata),
    a AS (INSERT INTO attempts (id, run_id, number, status, worker_id, started_at)
        SELECT r.new_attempt_id, r.id, r.attempt_count, 'EXECUTING', $1, start_time FROM r JOIN prev USING (id)
        WHERE NOT prev.resuming)
    SELECT r.id, r.environment_id, r.status, r.updated_at, r.task_identifier, r.payload, r.attempt_count,
        r.max_attempts, r.max_duration, r.executed_ms, r.machine, r.queue, r.tags, r.created_at,
        r.traceparent, r.root_run_id, r.depth, prev.resuming, (r.executed_ms / 1000.0)::float8,
        coalesce((SELECT t.id FROM attempts t WHERE t.run_id = r.id AND t.number = r.attempt_count),
          r.new_attempt_id), r.metadata
    FROM r JOIN prev USING (id);
END
$fn$;
