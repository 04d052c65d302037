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


async def journal(conn: Conn, run_id: str) -> list[asyncpg.Record]:
    """The run's completed waitpoints in order, with the child task and result of RUN ones."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT w.seq, w.type, c.task_identifier AS task_id, w.result FROM waitpoints w"
        " LEFT JOIN runs c ON c.id = w.child_run_id"
        " WHERE w.run_id = $1 AND w.status = 'COMPLETED' ORDER BY w.seq",
        run_id,
    )
    return rows


async def resume_due(conn: Conn, limit: int = 1000) -> list[Transition]:
    """Complete waitpoints whose time came, whose child run finished or every run of whose batch
    finished; their runs go WAITING -> QUEUED, to continue where they left off (ahead of newer
    runs in their queue). A batch's result holds its runs' results in the order of its items."""
    rows = await conn.fetch(
        "WITH due AS ("
        "   (SELECT id FROM waitpoints WHERE status = 'PENDING' AND type = 'DURATION' AND resume_at <= now()"
        "    LIMIT $1)"
        "   UNION ALL"
        "   (SELECT w.id FROM waitpoints w JOIN runs c ON c.id = w.child_run_id"
        f"    WHERE w.status = 'PENDING' AND w.type = 'RUN' AND c.status IN {_FINAL} LIMIT $1)"
        "   UNION ALL"
        "   (SELECT w.id FROM waitpoints w JOIN batches b ON b.id = w.batch_id"
        "    WHERE w.status = 'PENDING' AND w.type = 'BATCH'"
        "    AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.batch_id = b.id AND c.batch_id IS NOT NULL"
        f"      AND c.status NOT IN {_FINAL})"
        "    AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.id = ANY(b.cached_run_ids)"
        f"      AND c.status NOT IN {_FINAL}) LIMIT $1)),"
        " done AS (UPDATE waitpoints w SET status = 'COMPLETED', completed_at = now(),"
        "   result = CASE WHEN w.type = 'RUN' THEN (SELECT jsonb_build_object("
        "     'id', c.id, 'ok', c.status = 'COMPLETED', 'status', c.status, 'task_identifier', c.task_identifier,"
        "     'output', c.output, 'error', c.error)"
        "     FROM runs c WHERE c.id = w.child_run_id)"
        "   WHEN w.type = 'BATCH' THEN (SELECT jsonb_build_object('id', b.id, 'runs', jsonb_agg(jsonb_build_object("
        "     'id', c.id, 'ok', c.status = 'COMPLETED', 'status', c.status, 'task_identifier', c.task_identifier,"
        "     'output', c.output, 'error', c.error) ORDER BY i.n))"
        "     FROM batches b CROSS JOIN unnest(b.run_ids) WITH ORDINALITY AS i(id, n) JOIN runs c ON c.id = i.id"
        "     WHERE b.id = w.batch_id GROUP BY b.id) END"
        "   FROM due WHERE w.id = due.id AND w.status = 'PENDING' RETURNING w.run_id)"
        " UPDATE runs r SET status = 'QUEUED', resume_pending = true, worker_id = NULL,"
        "   available_at = now(), updated_at = now()"
        " FROM done WHERE r.id = done.run_id AND r.status = 'WAITING'"
        " RETURNING r.id, r.environment_id, r.status, r.updated_at",
        limit,
    )
    return _transitions(rows)
