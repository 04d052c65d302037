"""Waitpoints: where runs suspended, and the journal a resumed run replays."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import asyncpg

from slipstream_platform.ids import new_id
from slipstream_platform.store.runs import Transition, _transitions

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

_FINAL = "('COMPLETED', 'CANCELED', 'FAILED', 'TIMED_OUT', 'CRASHED', 'SYSTEM_FAILURE', 'EXPIRED')"


async def create(
    conn: Conn,
    *,
    run_id: str,
    seq: int,
    type: str,
    resume_at: datetime | None = None,
    child_run_id: str | None = None,
    batch_id: str | None = None,
) -> str:
    """Record the waitpoint a run is suspending at."""
    waitpoint_id = new_id("waitpoint")
    await conn.execute(
        "INSERT INTO waitpoints (id, run_id, seq, type, resume_at, child_run_id, batch_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        waitpoint_id,
        run_id,
        seq,
        type,
        resume_at,
        child_run_id,
        batch_id,
    )
    return waitpoint_id


async def exists(conn: Conn, run_id: str, seq: int) -> bool:
    """Whether the run has a waitpoint at `seq` (a wait recorded already)."""
    return bool(await conn.fetchval("SELECT true FROM waitpoints WHERE run_id = $1 AND seq = $2", run_id, seq))


async def journal(conn: Conn, run_id: str) -> list[asyncpg.Record]:
    """The run's completed waitpoints in order, with the child task and result of RUN ones (and
    the name and result of STEP ones)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT w.seq, w.type, coalesce(c.task_identifier, w.step_name) AS task_id, w.result FROM waitpoints w"
        " LEFT JOIN runs c ON c.id = w.child_run_id"
        " WHERE w.run_id = $1 AND w.status = 'COMPLETED' ORDER BY w.seq",
        run_id,
    )
    return rows


# A child's output in the payload store is named, for the supervisor to read (packets.py).
_PACKET = (" || CASE WHEN c.output_packet IS NULL THEN '{}'::jsonb"
           " ELSE jsonb_build_object('output_packet', c.output_packet) END")


def _resume_statement(scope: str) -> str:
    """The statement of `resume_due` (scope "due"); "children": only the waits on the runs in
    $2; "run": only the waits of the run $2 (none of its DURATION ones)."""
    children = scope == "children"
    run_filter = {"children": " AND c.id = ANY($2::text[])", "run": " AND w.run_id = $2"}.get(scope, "")
    # The batches of the children first, by primary key (left to the planner, it probed each
    # batch's 1,000 runs for the children: 20 ms instead of 0.1).
    batches = ("theirs AS MATERIALIZED (SELECT DISTINCT f.batch_id FROM runs f WHERE f.id = ANY($2::text[])"
               " AND f.batch_id IS NOT NULL),") if children else ""
    batch_filter = {"children": " AND w.batch_id IN (SELECT batch_id FROM theirs)",
                    "run": " AND w.run_id = $2"}.get(scope, "")
    durations = "" if scope != "due" else (
        "   (SELECT id FROM waitpoints WHERE status = 'PENDING' AND type = 'DURATION' AND resume_at <= now()"
        "    LIMIT $1)"
        "   UNION ALL")
    return (
        # MATERIALIZED: found once, not once per pending waitpoint.
        f"WITH {batches} due AS MATERIALIZED ({durations}"
        "   (SELECT w.id FROM waitpoints w JOIN runs c ON c.id = w.child_run_id"
        f"    WHERE w.status = 'PENDING' AND w.type = 'RUN' AND c.status IN {_FINAL}{run_filter} LIMIT $1)"
        "   UNION ALL"
        "   (SELECT w.id FROM waitpoints w JOIN batches b ON b.id = w.batch_id"
        f"    WHERE w.status = 'PENDING' AND w.type = 'BATCH'{batch_filter}"
        "    AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.batch_id = b.id AND c.batch_id IS NOT NULL"
        f"      AND c.status NOT IN {_FINAL})"
        "    AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.id = ANY(b.cached_run_ids)"
        f"      AND c.status NOT IN {_FINAL}) LIMIT $1)),"
        " done AS (UPDATE waitpoints w SET status = 'COMPLETED', completed_at = now(),"
        "   result = CASE WHEN w.type = 'RUN' THEN (SELECT jsonb_build_object("
        "     'id', c.id, 'ok', c.status = 'COMPLETED', 'status', c.status, 'task_identifier', c.task_identifier,"
        f"     'output', c.output, 'error', c.error){_PACKET}"
        "     FROM runs c WHERE c.id = w.child_run_id)"
        "   WHEN w.type = 'BATCH' THEN (SELECT jsonb_build_object('id', b.id, 'runs', jsonb_agg(jsonb_build_object("
        "     'id', c.id, 'ok', c.status = 'COMPLETED', 'status', c.status, 'task_identifier', c.task_identifier,"
        f"     'output', c.output, 'error', c.error){_PACKET} ORDER BY i.n))"
        "     FROM batches b CROSS JOIN unnest(b.run_ids) WITH ORDINALITY AS i(id, n) JOIN runs c ON c.id = i.id"
        "     WHERE b.id = w.batch_id GROUP BY b.id) END"
        "   FROM due WHERE w.id = due.id AND w.status = 'PENDING' RETURNING w.run_id)"
        " UPDATE runs r SET status = 'QUEUED', resume_pending = true, worker_id = NULL,"
        "   available_at = now(), updated_at = now()"
        " FROM done WHERE r.id = done.run_id AND r.status = 'WAITING'"
        " RETURNING r.id, r.environment_id, r.status, r.updated_at"
    )


_RESUME_DUE = _resume_statement("due")
_RESUME_PARENTS = _resume_statement("children")
_RESUME_RUN = _resume_statement("run")


class StepRefused(Exception):
    """A step cannot be recorded: its run is not executing that attempt, or another step (or
    wait) holds its position."""


class StepRunNotFound(LookupError):
    """The step's run is not a run of the environment (another environment's looks the same)."""


async def record_step(conn: Conn, *, environment_id: str, run_id: str, attempt_number: int, seq: int, name: str,
                      result_json: str) -> None:
    """Journal a step's result at its position, if the run is executing that attempt (a
    repeated request for the same step changes nothing)."""
    row = await conn.fetchrow(
        "WITH run AS (SELECT id FROM runs WHERE id = $2 AND environment_id = $1 AND status = 'EXECUTING'"
        "   AND attempt_count = $3),"
        " added AS (INSERT INTO waitpoints (id, run_id, seq, type, step_name, status, result, completed_at)"
        "   SELECT $4, run.id, $5, 'STEP', $6, 'COMPLETED', $7::jsonb, now() FROM run"
        "   ON CONFLICT (run_id, seq) DO NOTHING RETURNING id)"
        " SELECT EXISTS (SELECT 1 FROM runs WHERE id = $2 AND environment_id = $1) AS known,"
        "   EXISTS (SELECT 1 FROM run) AS executing, EXISTS (SELECT 1 FROM added) AS added,"
        "   (SELECT type = 'STEP' AND step_name = $6 FROM waitpoints WHERE run_id = $2 AND seq = $5) AS same",
        environment_id, run_id, attempt_number, new_id("waitpoint"), seq, name, result_json)
    if not row["known"]:
        raise StepRunNotFound(f"run {run_id} not found")
    if not row["executing"]:
        raise StepRefused(f"run {run_id} is not executing attempt {attempt_number}")
    if not row["added"] and not row["same"]:
        raise StepRefused(f"position {seq} of run {run_id} holds another step or wait than {name!r}")


async def resume_due(conn: Conn, limit: int = 1000) -> list[Transition]:
    """Complete waitpoints whose time came, whose child run finished or every run of whose batch
    finished; their runs go WAITING -> QUEUED, to continue where they left off (ahead of newer
    runs in their queue). A batch's result holds its runs' results in the order of its items.

    The scheduler calls it every tick; the supervisor calls `resume_parents` right after the
    ends it records, so a parent does not wait for the tick."""
    return _transitions(await conn.fetch(_RESUME_DUE, limit))


async def resume_parents(conn: Conn, children: list[str]) -> list[Transition]:
    """`resume_due` for the waits on these runs, which just reached a final status: their
    parents' RUN waits, and the BATCH waits of their batches if every run of it is final."""
    if not children:
        return []
    return _transitions(await conn.fetch(_RESUME_PARENTS, 1000, children))


async def resume_if_done(conn: Conn, run_id: str) -> list[Transition]:
    """`resume_due` for the run that just suspended, if what it waits for is final already (a
    cached child that finished, or a streamed batch whose runs all ended before the wait was
    recorded: their ends found no waitpoint to complete)."""
    return _transitions(await conn.fetch(_RESUME_RUN, 1000, run_id))
