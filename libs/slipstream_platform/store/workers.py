"""Workers: supervisor processes, the tasks they serve and their capacity."""

from __future__ import annotations

import asyncpg
import msgspec


class LiveWorker(msgspec.Struct, frozen=True):
    """A live worker (a supervisor) that takes runs of its tasks."""

    id: str
    environment_id: str
    task_ids: list[str]
    capacity: int


async def register(
    conn: asyncpg.Connection,
    *,
    worker_id: str,
    environment_id: str,
    task_ids: list[str],
    manifest_json: str,
    capacity: int,
    version: str,
    hostname: str,
) -> None:
    """Record a newly started worker."""
    await conn.execute(
        "INSERT INTO workers (id, environment_id, task_ids, manifest, capacity, version, hostname)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        worker_id,
        environment_id,
        task_ids,
        manifest_json,
        capacity,
        version,
        hostname,
    )


async def heartbeat(conn: asyncpg.Connection | asyncpg.Pool, worker_id: str) -> bool:
    """Refresh a worker's heartbeat; False if it was already declared stopped."""
    status = await conn.execute(
        "UPDATE workers SET heartbeat_at = now() WHERE id = $1 AND stopped_at IS NULL", worker_id
    )
    return bool(status == "UPDATE 1")


async def stop(conn: asyncpg.Connection | asyncpg.Pool, worker_id: str) -> None:
    """Mark a worker as gone."""
    await conn.execute(
        "UPDATE workers SET stopped_at = now() WHERE id = $1 AND stopped_at IS NULL", worker_id
    )


async def live(conn: asyncpg.Connection | asyncpg.Pool) -> list[LiveWorker]:
    """Every worker that has not stopped, most capacity first."""
    rows = await conn.fetch(
        "SELECT id, environment_id, task_ids, capacity FROM workers"
        " WHERE stopped_at IS NULL ORDER BY capacity DESC, id"
    )
    return [LiveWorker(r["id"], r["environment_id"], list(r["task_ids"]), r["capacity"]) for r in rows]


async def serves_task(
    conn: asyncpg.Connection | asyncpg.Pool, environment_id: str, task_id: str, version: str | None = None
) -> bool:
    """Whether a live worker of the environment may take a new run of the task: one of the
    current version, or of `version` for a run locked to it (`lockToVersion`)."""
    return bool(await conn.fetchval("SELECT slipstream_serves($1, $2, $3)", environment_id, task_id, version))


async def stop_silent(conn: asyncpg.Connection, timeout_seconds: float) -> list[str]:
    """Declare stopped every worker whose last heartbeat is older than the timeout."""
    rows = await conn.fetch(
        "UPDATE workers SET stopped_at = now() WHERE stopped_at IS NULL"
        " AND heartbeat_at < now() - make_interval(secs => $1) RETURNING id",
        timeout_seconds,
    )
    return [r["id"] for r in rows]
