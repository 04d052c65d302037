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
    region: str | None = None,
) -> None:
    """Record a newly started worker (`region` None: the environment's default region)."""
    await conn.execute(
        "INSERT INTO workers (id, environment_id, task_ids, manifest, capacity, version, hostname, region)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        worker_id,
        environment_id,
        task_ids,
        manifest_json,
        capacity,
        version,
        hostname,
        region,
    )
    if region is not None:
        await conn.execute("INSERT INTO regions (environment_id, name) VALUES ($1, $2)"
                           " ON CONFLICT (environment_id, name) DO UPDATE SET registered_at = now()",
                           environment_id, region)


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
    conn: asyncpg.Connection | asyncpg.Pool, environment_id: str, task_id: str, version: str | None = None,
    region: str | None = None,
) -> bool:
    """Whether a live worker of the environment may take a new run of the task: one of the
    current version, or of `version` for a run locked to it (`lockToVersion`), in `region`
    (None: the environment's default region)."""
    return bool(await conn.fetchval("SELECT slipstream_serves($1, $2, $3, $4)", environment_id, task_id, version,
                                    region))


async def regions(conn: asyncpg.Connection | asyncpg.Pool, environment_id: str) -> list[asyncpg.Record]:
    """The environment's known regions (its default, and every region a worker registered with),
    the default first, with their live workers."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT k.name, k.name = e.default_region AS is_default,"
        "  (SELECT count(*) FROM workers w WHERE w.environment_id = e.id AND w.stopped_at IS NULL"
        "   AND coalesce(w.region, e.default_region) = k.name)::int AS live_workers"
        " FROM environments e CROSS JOIN LATERAL (SELECT e.default_region AS name"
        "   UNION SELECT name FROM regions WHERE environment_id = e.id) AS k"
        " WHERE e.id = $1 ORDER BY k.name <> e.default_region, k.name",
        environment_id,
    )
    return rows


async def stop_silent(conn: asyncpg.Connection, timeout_seconds: float) -> list[str]:
    """Declare stopped every worker whose last heartbeat is older than the timeout."""
    rows = await conn.fetch(
        "UPDATE workers SET stopped_at = now() WHERE stopped_at IS NULL"
        " AND heartbeat_at < now() - make_interval(secs => $1) RETURNING id",
        timeout_seconds,
    )
    return [r["id"] for r in rows]
