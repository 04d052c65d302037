-- Supervisors take their own runs (docs/adr/0009-supervisors-take-their-runs.md): the claim
-- (slipstream_claim, migration 0013, unchanged) and the start of the claimed runs in one
-- transaction and one round trip. A run goes QUEUED -> DEQUEUED -> EXECUTING inside the
-- transaction, so no crash leaves it DEQUEUED. The commit does not wait for the WAL flush
-- (ADR 0008): a take lost with Postgres leaves its runs QUEUED, to be taken again.

-- The start (it was the statement of store/attempts.start): DEQUEUED -> EXECUTING for each run
-- still DEQUEUED on worker $1, a new attempt (or the same attempt again for a run resuming from
-- a wait). $2 the runs; $3, $4, $5 the defaults of their tasks for what the trigger left open
-- (max attempts, max duration, machine); $6 an attempt id for each.
CREATE FUNCTION slipstream_start(text, text[], integer[], integer[], text[], text[])
RETURNS TABLE (id text, environment_id text, status text, updated_at timestamptz, task_identifier text,
               payload text, attempt_count integer, max_attempts integer, max_duration integer,
               executed_ms bigint, machine text, queue text, tags text[], created_at timestamptz,
               traceparent text, root_run_id text, depth integer, resuming boolean,
               executed_seconds float8, attempt_id text)
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
        max_duration = coalesce(r.max_duration, req.max_duration), machine = coalesce(r.machine, req.machine)
        -- The worker is checked on the row, not through runs_on_worker: that index holds an
        -- entry for every run the worker started since the last vacuum.
        FROM req WHERE r.id = req.run_id AND r.id = ANY($2) AND r.status = 'DEQUEUED'
        AND coalesce(r.worker_id, '') = $1
        RETURNING r.id, r.environment_id, r.status, r.updated_at, r.task_identifier, r.payload::text AS payload,
          r.attempt_count, r.max_attempts, r.max_duration, r.executed_ms, r.machine, r.queue, r.tags,
          r.created_at, r.traceparent, r.root_run_id, r.depth, req.attempt_id AS new_attempt_id),
    a AS (INSERT INTO attempts (id, run_id, number, status, worker_id, started_at)
        SELECT r.new_attempt_id, r.id, r.attempt_count, 'EXECUTING', $1, start_time FROM r JOIN prev USING (id)
        WHERE NOT prev.resuming)
    SELECT r.id, r.environment_id, r.status, r.updated_at, r.task_identifier, r.payload, r.attempt_count,
        r.max_attempts, r.max_duration, r.executed_ms, r.machine, r.queue, r.tags, r.created_at,
        r.traceparent, r.root_run_id, r.depth, prev.resuming, (r.executed_ms / 1000.0)::float8,
        coalesce((SELECT t.id FROM attempts t WHERE t.run_id = r.id AND t.number = r.attempt_count),
          r.new_attempt_id)
    FROM r JOIN prev USING (id);
END
$fn$;

-- The take: claim for worker $1 of environment $2 serving tasks $3 with capacity $4 (every
-- limit, as slipstream_claim), then start what was claimed. $5, $6, $7 are the defaults of
-- each task of $3 (max attempts, max duration, machine); $8 holds at least as many attempt
-- ids as the claim can take ($4). `rated`: the run's start was counted by a rate limit;
-- `more`: the claim stopped at the free slots but left runs that another take may find.
CREATE FUNCTION slipstream_take(text, text, text[], integer, integer[], integer[], text[], text[])
RETURNS TABLE (id text, environment_id text, status text, updated_at timestamptz, task_identifier text,
               payload text, attempt_count integer, max_attempts integer, max_duration integer,
               executed_ms bigint, machine text, queue text, tags text[], created_at timestamptz,
               traceparent text, root_run_id text, depth integer, resuming boolean,
               executed_seconds float8, attempt_id text, rated boolean, more boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    claimed record;
BEGIN
    SELECT array_agg(c.id ORDER BY c.n) AS ids,
           array_agg(coalesce(d.max_attempts, 1) ORDER BY c.n) AS max_attempts,
           array_agg(d.max_duration ORDER BY c.n) AS max_durations,
           array_agg(coalesce(d.machine, 'small-1x') ORDER BY c.n) AS machines,
           coalesce(array_agg(c.id) FILTER (WHERE c.rated), '{}') AS rated,
           coalesce(bool_or(c.more), false) AS more
      INTO claimed
      FROM (SELECT k.*, row_number() OVER () AS n FROM slipstream_claim($1, $2, $3, $4) AS k) AS c
      LEFT JOIN unnest($3, $5, $6, $7) AS d(task, max_attempts, max_duration, machine)
        ON d.task = c.task_identifier;
    IF claimed.ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT s.*, s.id = ANY(claimed.rated), claimed.more
    FROM slipstream_start($1, claimed.ids, claimed.max_attempts, claimed.max_durations, claimed.machines,
                          $8[1:cardinality(claimed.ids)]) AS s;
END
$fn$;
