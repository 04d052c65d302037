-- Regions: a run triggered with `region` goes only to supervisors started with that region
-- (`slipstream worker --region eu-1`); a run without one, and a worker without one, are in the
-- environment's default region (`environments.default_region`, which PATCH /api/v1/environment
-- changes). The known regions are the default and every region a worker registered with
-- (`regions`); a trigger naming another is refused. Queue limits stay global across regions.

ALTER TABLE environments ADD COLUMN default_region text NOT NULL DEFAULT 'default';
ALTER TABLE runs ADD COLUMN region text;
ALTER TABLE workers ADD COLUMN region text;

CREATE TABLE regions (
    environment_id  text NOT NULL REFERENCES environments (id),
    name            text NOT NULL,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment_id, name)
);

-- 0030's rule, in the run's region too.
DROP FUNCTION slipstream_serves(text, text, text);
CREATE FUNCTION slipstream_serves(text, text, text, text) RETURNS boolean
LANGUAGE sql STABLE AS $fn$
    SELECT EXISTS (SELECT 1 FROM workers w JOIN environments e ON e.id = w.environment_id
        WHERE w.environment_id = $1 AND w.stopped_at IS NULL AND $2 = ANY(w.task_ids)
        AND coalesce(w.region, e.default_region) = coalesce($4, e.default_region)
        AND CASE WHEN $3 IS NOT NULL THEN w.version = $3
                 ELSE e.current_version IS NULL OR w.version = e.current_version END)
$fn$;

-- A schedule's runs are in the default region: a worker elsewhere does not make its ticks fire.
CREATE OR REPLACE FUNCTION slipstream_schedule_fires(text, text) RETURNS boolean
LANGUAGE sql STABLE AS $fn$
    SELECT CASE
        WHEN e.type <> 'DEVELOPMENT' AND e.current_version IS NOT NULL THEN
            EXISTS (SELECT 1 FROM deployments d WHERE d.environment_id = $1 AND d.version = e.current_version
                    AND $2 = ANY(d.task_ids))
        ELSE EXISTS (SELECT 1 FROM workers w WHERE w.environment_id = $1 AND w.stopped_at IS NULL
                     AND $2 = ANY(w.task_ids) AND coalesce(w.region, e.default_region) = e.default_region)
            OR (e.type <> 'DEVELOPMENT' AND EXISTS (SELECT 1 FROM (SELECT d.task_ids FROM deployments d
                WHERE d.environment_id = $1 ORDER BY d.registered_at DESC LIMIT 1) AS l WHERE $2 = ANY(l.task_ids)))
    END
    FROM environments e WHERE e.id = $1
$fn$;

-- Runs under way when 0030 came (started, not finished) lock to the version that ran them, as
-- every run started since does.
UPDATE runs SET locked_version = version
 WHERE locked_version IS NULL AND version IS NOT NULL AND attempt_count > 0
   AND status IN ('PENDING_VERSION', 'DELAYED', 'QUEUED', 'DEQUEUED', 'EXECUTING', 'WAITING');

-- slipstream_claim is 0030's with the region added to its four filters of QUEUED runs.
CREATE OR REPLACE FUNCTION slipstream_claim(text, text, text[], integer)
RETURNS TABLE (id text, environment_id text, status text, updated_at timestamptz, task_identifier text,
               traceparent text, queue text, concurrency_key text, rated boolean, more boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    state record;
    w_version text;
    w_current boolean;
    w_region text;
    e_region text;
BEGIN
    -- The worker's version, and whether it is current: the environment's promoted version, or
    -- any version before a first deploy. A run that has started (locked_version set) goes back
    -- only to a worker of its version; a run that has not, only to a current worker.
    -- And its region (a run or a worker without one is in the environment's default region).
    SELECT w.version, e.current_version IS NULL OR e.current_version = w.version,
           coalesce(w.region, e.default_region), e.default_region
      INTO w_version, w_current, w_region, e_region
      FROM workers w JOIN environments e ON e.id = w.environment_id WHERE w.id = $1;
    -- Nothing ready for this worker (most claims after a slot frees): no lock, no counts. A run
    -- that becomes ready meanwhile sends its own signal after its commit, so none is missed.
    IF NOT EXISTS (SELECT 1 FROM runs WHERE runs.environment_id = $2 AND runs.status = 'QUEUED'
                   AND runs.task_identifier = ANY($3::text[]) AND runs.available_at <= now()
                   AND (runs.locked_version = w_version OR (runs.locked_version IS NULL AND w_current))
                AND coalesce(runs.region, e_region) = w_region) THEN
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Every count below is read after the lock (each statement takes a new snapshot), so
    -- claims of one environment by several queue-manager replicas are exact.
    PERFORM pg_advisory_xact_lock(hashtextextended($2, 3));
    SELECT (SELECT count(*) FROM runs WHERE runs.environment_id = $2 AND runs.status IN ('DEQUEUED', 'EXECUTING'))
             AS running,
           (SELECT concurrency_limit FROM environments WHERE environments.id = $2) AS base,
           EXISTS (SELECT 1 FROM queues WHERE queues.environment_id = $2 AND (paused
             OR num_nonnulls(concurrency_limit, per_key_limit, rate_limit, per_key_rate_limit) > 0)) AS limited,
           EXISTS (SELECT 1 FROM runs WHERE runs.environment_id = $2 AND runs.status = 'QUEUED'
             AND runs.concurrency_key IS NOT NULL) AS keyed
      INTO state;
    IF NOT state.limited AND NOT state.keyed AND state.running + $4 <= state.base THEN
        -- No limits, no keys to take turns, no way to reach the base: the plain ready order.
        RETURN QUERY
        WITH busy AS (SELECT count(*) AS n FROM runs
            WHERE worker_id = $1 AND status IN ('DEQUEUED', 'EXECUTING')),
        picked AS (SELECT id FROM runs
            WHERE environment_id = $2 AND status = 'QUEUED' AND concurrency_key IS NULL
            AND task_identifier = ANY($3::text[]) AND available_at <= now()
            AND (runs.locked_version = w_version OR (runs.locked_version IS NULL AND w_current))
                AND coalesce(runs.region, e_region) = w_region
            AND EXISTS (SELECT 1 FROM workers WHERE id = $1 AND stopped_at IS NULL)
            ORDER BY queue_ts, id LIMIT greatest($4 - (SELECT n FROM busy), 0)
            FOR UPDATE SKIP LOCKED),
        dequeued AS (UPDATE runs r SET status = 'DEQUEUED', worker_id = $1, dequeued_at = now(),
            updated_at = now() FROM picked WHERE r.id = picked.id
            RETURNING r.id, r.environment_id, r.status, r.updated_at, r.task_identifier, r.traceparent,
              r.queue, r.concurrency_key)
        SELECT *, false AS rated, false AS more FROM dequeued;
        RETURN;
    END IF;
    RETURN QUERY
    WITH RECURSIVE busy AS (SELECT count(*)::int AS n FROM runs
        WHERE worker_id = $1 AND status IN ('DEQUEUED', 'EXECUTING')),
    free AS (SELECT greatest($4 - n, 0) AS n FROM busy),
    env AS (SELECT concurrency_limit AS base, floor(concurrency_limit * burst_factor)::int AS burst,
        coalesce(dispatch_queue, '') AS queue, coalesce(dispatch_key, '') AS key
        FROM environments WHERE id = $2),
    running AS (SELECT count(*)::int AS n FROM runs
        WHERE environment_id = $2 AND status IN ('DEQUEUED', 'EXECUTING')),
    limits AS (SELECT name, rate_limit IS NOT NULL OR per_key_rate_limit IS NOT NULL AS rated
        FROM queues WHERE environment_id = $2),
    -- The walk: from the copy after the last claim's, skipping shut queues and queues that
    -- already have as many open copies as room; `taken` counts them per queue.
    ring (queue, key, wrapped, skip, pos, open, taken, queue_room, room) AS (
        SELECT queue, key, false, false, 0, false, 0, 0, 0 FROM env
        UNION ALL
        SELECT nx.queue, nx.key, nx.wrapped, st.shut OR (st.open AND t.taken >= st.queue_room),
            w.pos + 1, st.open, t.taken, st.queue_room, least(st.queue_room, coalesce(st.key_room, $4), $4)
        FROM ring w
        -- The copy after w's in the ring of (queue, key) copies with QUEUED runs: in key
        -- order, past the rest of w's queue when w.skip, wrapping around once to the first copy.
        CROSS JOIN LATERAL (SELECT * FROM (
            (SELECT r.queue, coalesce(r.concurrency_key, '') AS key, w.wrapped FROM runs r
                WHERE NOT w.skip AND r.environment_id = $2 AND r.status = 'QUEUED'
                AND (r.queue, coalesce(r.concurrency_key, '')) > (w.queue, w.key)
                ORDER BY r.queue, coalesce(r.concurrency_key, '') LIMIT 1)
            UNION ALL
            (SELECT r.queue, coalesce(r.concurrency_key, ''), w.wrapped FROM runs r
                WHERE w.skip AND r.environment_id = $2 AND r.status = 'QUEUED' AND r.queue > w.queue
                ORDER BY r.queue, coalesce(r.concurrency_key, '') LIMIT 1)
            UNION ALL
            (SELECT r.queue, coalesce(r.concurrency_key, ''), true FROM runs r
                WHERE NOT w.wrapped AND r.environment_id = $2 AND r.status = 'QUEUED'
                ORDER BY r.queue, coalesce(r.concurrency_key, '') LIMIT 1)
            ) AS c LIMIT 1) AS nx
        -- What the copy may start now: its queue's room (limits, cap, rate window, the
        -- environment's base), whether the queue is shut, the key's room, and whether it is
        -- open: it has room and a run this worker may start. Index lookups only.
        CROSS JOIN LATERAL (SELECT b.*, NOT b.shut AND coalesce(b.key_room, 1) > 0 AND EXISTS (SELECT 1 FROM runs e
                WHERE e.environment_id = $2 AND e.queue = nx.queue AND coalesce(e.concurrency_key, '') = nx.key
                AND e.status = 'QUEUED' AND e.task_identifier = ANY($3::text[]) AND e.available_at <= now()
                AND (e.locked_version = w_version OR (e.locked_version IS NULL AND w_current))
                AND coalesce(e.region, e_region) = w_region) AS open
            FROM (SELECT r.queue_room, coalesce(q.paused, false) OR coalesce(q.key_limit, 1) = 0 OR r.queue_room <= 0
                    AS shut,
                  least(q.key_limit - h.key_n, q.per_key_rate_limit - (SELECT count(*) FROM queue_starts s
                    WHERE s.environment_id = $2 AND s.queue = nx.queue AND coalesce(s.concurrency_key, '') = nx.key
                    AND s.started_at > statement_timestamp() - make_interval(secs => q.per_key_rate_period)))::int
                    AS key_room
                FROM env
                LEFT JOIN LATERAL (SELECT paused, coalesce(per_key_limit, concurrency_limit) AS key_limit,
                    CASE WHEN per_key_limit IS NOT NULL THEN concurrency_limit END AS queue_limit,
                    rate_limit, rate_period, per_key_rate_limit, per_key_rate_period
                    FROM queues WHERE environment_id = $2 AND name = nx.queue) AS q ON true
                CROSS JOIN LATERAL (SELECT count(*)::int AS queue_n,
                    (count(*) FILTER (WHERE coalesce(concurrency_key, '') = nx.key))::int AS key_n FROM runs
                    WHERE environment_id = $2 AND queue = nx.queue AND status IN ('DEQUEUED', 'EXECUTING')) AS h
                CROSS JOIN LATERAL (SELECT least(env.base - h.queue_n, q.queue_limit - h.queue_n,
                    q.rate_limit - (SELECT count(*) FROM queue_starts s WHERE s.environment_id = $2
                      AND s.queue = nx.queue
                      AND s.started_at > statement_timestamp() - make_interval(secs => q.rate_period)))::int
                    AS queue_room) AS r) AS b) AS st
        CROSS JOIN LATERAL (SELECT CASE WHEN nx.queue = w.queue THEN w.taken ELSE 0 END
            + st.open::int AS taken) AS t
        WHERE NOT (nx.wrapped AND (nx.queue, nx.key) > (SELECT queue, key FROM env))),
    chosen AS (SELECT * FROM ring WHERE pos > 0 AND open LIMIT (SELECT n FROM free)),
    candidates AS (SELECT c.id, h.queue, h.key, h.pos, h.queue_room, c.key_rank FROM chosen h
        CROSS JOIN LATERAL (SELECT r.id, row_number() OVER (ORDER BY r.queue_ts, r.id) AS key_rank
            FROM runs r WHERE r.environment_id = $2 AND r.queue = h.queue
            AND coalesce(r.concurrency_key, '') = h.key AND r.status = 'QUEUED'
            AND r.task_identifier = ANY($3::text[]) AND r.available_at <= now()
            AND (r.locked_version = w_version OR (r.locked_version IS NULL AND w_current))
                AND coalesce(r.region, e_region) = w_region
            ORDER BY r.queue_ts, r.id LIMIT h.room) AS c),
    within_queue AS (SELECT c.*, row_number() OVER
        (PARTITION BY c.queue ORDER BY c.key_rank, c.pos) AS queue_rank FROM candidates c),
    fair AS (SELECT id, queue, key, pos FROM within_queue WHERE queue_rank <= queue_room
        ORDER BY key_rank, pos
        LIMIT greatest(least((SELECT n FROM free), (SELECT burst FROM env) - (SELECT n FROM running)), 0)),
    -- One primary-key lookup per run, whatever the statistics say (a plan made while the
    -- table was small must not scan the queued runs' index): the status is checked on the
    -- locked row, outside the fence (OFFSET 0) that keeps the planner from pushing it down.
    picked AS (SELECT r.id FROM fair f CROSS JOIN LATERAL (SELECT id, status FROM runs
        WHERE runs.id = f.id FOR UPDATE SKIP LOCKED OFFSET 0) AS r
        WHERE r.status = 'QUEUED' AND EXISTS (SELECT 1 FROM workers WHERE id = $1 AND stopped_at IS NULL)),
    dequeued AS (UPDATE runs r SET status = 'DEQUEUED', worker_id = $1, dequeued_at = now(),
        updated_at = now() FROM picked WHERE r.id = picked.id
        RETURNING r.id, r.environment_id, r.status, r.updated_at, r.task_identifier, r.traceparent,
          r.queue, r.concurrency_key),
    -- The starts a rate limit counts, in the same transaction as the dispatch.
    counted AS (INSERT INTO queue_starts (environment_id, queue, concurrency_key, started_at)
        SELECT $2, d.queue, d.concurrency_key, statement_timestamp()
        FROM dequeued d JOIN limits l ON l.name = d.queue AND l.rated),
    -- The next claim goes on after the last copy served.
    moved AS (UPDATE environments SET dispatch_queue = f.queue, dispatch_key = f.key
        FROM (SELECT queue, key FROM fair WHERE id IN (SELECT id FROM dequeued) ORDER BY pos DESC LIMIT 1) AS f
        WHERE environments.id = $2)
    SELECT d.*, coalesce(l.rated, false) AS rated,
        (SELECT count(*) FROM chosen) = (SELECT n FROM free)
        AND (SELECT count(*) FROM dequeued) < (SELECT n FROM free) AS more
    FROM dequeued d LEFT JOIN limits l ON l.name = d.queue;
END
$fn$;
