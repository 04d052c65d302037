-- Run metadata (PUT /api/v1/runs/{runId}/metadata, the SDK's `metadata`): operations applied
-- in Postgres, on the locked row, so concurrent updates from several runs (children updating
-- their parent) never lose each other's operations.
--
-- slipstream_metadata_apply(doc, ops): `ops` is a JSON array of {type, key, value} (the
-- seed's operations, checked by the API before they get here): set, delete, append (to a
-- list; a value that is not a list becomes the list's first item), remove (every item equal
-- to value from a list), increment and decrement (a number; missing counts as 0), update (the
-- object `value` merged in at the top), replace (the object `value` instead of it all). A key is a name or a JSON path `$.a.b`; setting a
-- nested key makes the objects on its way.
--
-- slipstream_start and slipstream_take (migrations 0014, 0015) also return the run's metadata,
-- so an attempt starts with it (`ctx.run.metadata`, `metadata.current()`); otherwise unchanged.

CREATE FUNCTION slipstream_metadata_path(key text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN key LIKE '$.%' THEN string_to_array(substr(key, 3), '.') ELSE ARRAY[key] END
$fn$;

CREATE FUNCTION slipstream_metadata_set(doc jsonb, path text[], value jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    child jsonb;
BEGIN
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' THEN
        doc := '{}';
    END IF;
    IF cardinality(path) = 1 THEN
        RETURN jsonb_set(doc, path, value, true);
    END IF;
    child := doc -> path[1];
    RETURN jsonb_set(doc, path[1:1], slipstream_metadata_set(child, path[2:], value), true);
END
$fn$;

-- The value at `path`, through objects only (a list or a scalar on the way: none).
CREATE FUNCTION slipstream_metadata_get(doc jsonb, path text[]) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY path LOOP
        IF jsonb_typeof(doc) IS DISTINCT FROM 'object' THEN
            RETURN NULL;
        END IF;
        doc := doc -> name;
    END LOOP;
    RETURN doc;
END
$fn$;

-- `doc` without the key at `path`, through objects only.
CREATE FUNCTION slipstream_metadata_delete(doc jsonb, path text[]) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' OR NOT doc ? path[1] THEN
        RETURN doc;
    END IF;
    IF cardinality(path) = 1 THEN
        RETURN doc - path[1];
    END IF;
    RETURN jsonb_set(doc, path[1:1], slipstream_metadata_delete(doc -> path[1], path[2:]));
END
$fn$;

CREATE FUNCTION slipstream_metadata_apply(doc jsonb, ops jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    op jsonb;
    path text[];
    current_value jsonb;
BEGIN
    doc := coalesce(doc, '{}');
    FOR op IN SELECT value FROM jsonb_array_elements(ops) LOOP
        path := slipstream_metadata_path(op ->> 'key');
        current_value := CASE WHEN path IS NULL THEN NULL ELSE slipstream_metadata_get(doc, path) END;
        CASE op ->> 'type'
        WHEN 'set' THEN
            doc := slipstream_metadata_set(doc, path, op -> 'value');
        WHEN 'delete' THEN
            doc := slipstream_metadata_delete(doc, path);
        WHEN 'append' THEN
            doc := slipstream_metadata_set(doc, path, CASE
                WHEN current_value IS NULL OR current_value = 'null' THEN jsonb_build_array(op -> 'value')
                WHEN jsonb_typeof(current_value) = 'array' THEN current_value || jsonb_build_array(op -> 'value')
                ELSE jsonb_build_array(current_value, op -> 'value') END);
        WHEN 'remove' THEN
            IF jsonb_typeof(current_value) = 'array' THEN
                doc := slipstream_metadata_set(doc, path, coalesce(
                    (SELECT jsonb_agg(e) FROM jsonb_array_elements(current_value) AS e WHERE e <> op -> 'value'),
                    '[]'));
            END IF;
        WHEN 'increment', 'decrement' THEN
            doc := slipstream_metadata_set(doc, path, to_jsonb(
                (CASE WHEN jsonb_typeof(current_value) = 'number' THEN current_value::text::numeric ELSE 0 END)
                + (CASE WHEN op ->> 'type' = 'increment' THEN 1 ELSE -1 END) * (op ->> 'value')::numeric));
        WHEN 'update' THEN
            doc := doc || (op -> 'value');
        WHEN 'replace' THEN
            doc := op -> 'value';
        END CASE;
        IF doc IS NULL OR jsonb_typeof(doc) <> 'object' THEN
            RAISE EXCEPTION 'metadata operation % left no object', op USING ERRCODE = '22023';
        END IF;
    END LOOP;
    RETURN doc;
END
$fn$;

DROP FUNCTION slipstream_take(text, text, text[], integer, integer[], integer[], text[], text[]);
DROP FUNCTION slipstream_start(text, text[], integer[], integer[], text[], text[]);

CREATE FUNCTION slipstream_start(text, text[], integer[], integer[], text[], text[])
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
        max_duration = coalesce(r.max_duration, req.max_duration), machine = coalesce(r.machine, req.machine)
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

CREATE FUNCTION slipstream_take(text, text, text[], integer, integer[], integer[], text[], text[])
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
BEGIN
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
