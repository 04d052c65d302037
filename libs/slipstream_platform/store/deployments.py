"""Deployments: the versions of an environment's task code, which one is current, and the
runs locked to each (migration 0030).

A version is registered by each worker that starts with it and by `slipstream deploy`;
promoting one makes it the environment's current version: new runs go only to its workers,
and workers of other versions drain (they take only the runs locked to them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeAlias

import asyncpg
import msgspec

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

# Unfinished runs that wait for their version (the rest run on its workers): runs_locked_waiting.
_WAITING = "('PENDING_VERSION', 'DELAYED', 'QUEUED', 'WAITING')"


class DeploymentRow(msgspec.Struct, frozen=True, kw_only=True):
    """A version as `GET /api/v1/deployments` shows it."""

    version: str
    status: Literal["CURRENT", "DRAINING", "INACTIVE"]
    task_ids: list[str]
    live_workers: int
    unfinished_runs: int
    created_at: datetime
    promoted_at: datetime | None


async def register(conn: Conn, environment_id: str, version: str, task_ids: list[str],
                   manifest_json: str | None, queues_json: str | None) -> None:
    """Record a version's catalog (a worker's, or a deploy's); a later registration replaces it
    (one without a manifest keeps the catalog it had)."""
    await conn.execute(
        "INSERT INTO deployments (environment_id, version, task_ids, manifest, queues)"
        " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)"
        " ON CONFLICT (environment_id, version) DO UPDATE SET task_ids = CASE WHEN EXCLUDED.manifest IS NULL"
        "   THEN deployments.task_ids ELSE EXCLUDED.task_ids END,"
        " manifest = coalesce(EXCLUDED.manifest, deployments.manifest),"
        " queues = coalesce(EXCLUDED.queues, deployments.queues), registered_at = now()",
        environment_id, version, task_ids, manifest_json, queues_json,
    )


async def known(conn: Conn, environment_id: str) -> list[str]:
    """Every version of the environment, newest registration first."""
    rows = await conn.fetch("SELECT version FROM deployments WHERE environment_id = $1"
                            " ORDER BY registered_at DESC, version", environment_id)
    return [r["version"] for r in rows]


async def is_current(conn: Conn, environment_id: str, version: str) -> bool:
    """Whether workers of this version take new runs: it was promoted, or nothing was yet."""
    return bool(await conn.fetchval(
        "SELECT current_version IS NULL OR current_version = $2 FROM environments WHERE id = $1",
        environment_id, version))


async def catalog(conn: Conn, environment_id: str, version: str) -> asyncpg.Record | None:
    """The version's task ids, manifest and queues (JSON text), if it is registered."""
    return await conn.fetchrow(
        "SELECT task_ids, manifest::text AS manifest, queues::text AS queues FROM deployments"
        " WHERE environment_id = $1 AND version = $2", environment_id, version)


async def promote(conn: asyncpg.Connection, environment_id: str, version: str) -> bool:
    """Make the version current; False if it is not registered."""
    status = await conn.execute(
        "UPDATE deployments SET promoted_at = now() WHERE environment_id = $1 AND version = $2",
        environment_id, version)
    if status != "UPDATE 1":
        return False
    await conn.execute("UPDATE environments SET current_version = $2 WHERE id = $1", environment_id, version)
    return True


async def listing(conn: Conn, environment_id: str, version: str | None = None) -> list[DeploymentRow]:
    """The environment's versions (or one), newest registration first, with their workers and the
    unfinished runs locked to them."""
    rows = await conn.fetch(
        "SELECT d.version, d.task_ids, d.created_at, d.promoted_at,"
        "   coalesce(e.current_version = d.version, false) AS promoted, e.current_version IS NULL AS open,"
        "   (SELECT count(*) FROM workers w WHERE w.environment_id = d.environment_id AND w.version = d.version"
        "     AND w.stopped_at IS NULL)::int AS live_workers,"
        f"  ((SELECT count(*) FROM runs r WHERE r.environment_id = d.environment_id AND r.locked_version = d.version"
        f"     AND r.locked_version IS NOT NULL AND r.status IN {_WAITING})"
        "   + (SELECT count(*) FROM runs r WHERE r.worker_id = ANY(ARRAY(SELECT w.id FROM workers w"
        "       WHERE w.environment_id = d.environment_id AND w.version = d.version))"
        "     AND r.status IN ('DEQUEUED', 'EXECUTING')))::int AS unfinished_runs"
        " FROM deployments d JOIN environments e ON e.id = d.environment_id"
        " WHERE d.environment_id = $1 AND ($2::text IS NULL OR d.version = $2)"
        " ORDER BY d.registered_at DESC, d.version",
        environment_id, version,
    )
    out = []
    for r in rows:
        current = r["promoted"] or (r["open"] and r["live_workers"] > 0)
        status: Literal["CURRENT", "DRAINING", "INACTIVE"] = (
            "CURRENT" if current else "DRAINING" if r["unfinished_runs"] else "INACTIVE")
        out.append(DeploymentRow(version=r["version"], status=status, task_ids=list(r["task_ids"]),
                                 live_workers=r["live_workers"], unfinished_runs=r["unfinished_runs"],
                                 created_at=r["created_at"], promoted_at=r["promoted_at"]))
    return out


async def unlock_orphaned(conn: Conn, environment_id: str | None = None) -> list[str]:
    """Release the runs locked to a version that no live worker may take any more ("while one
    exists": none of that version serves the run's task in its region), unless the trigger
    asked for that version (`lockToVersion`): current workers may take them now. Returns the
    environments where runs were released, to wake."""
    rows = await conn.fetch(
        # The locks in use first (a walk of runs_locked_waiting), then the runs of those that no
        # live worker of the version may take (slipstream_serves: task, region and version).
        "WITH locks AS (SELECT DISTINCT environment_id, locked_version, task_identifier, region FROM runs"
        f"   WHERE locked_version IS NOT NULL AND status IN {_WAITING} AND NOT lock_to_version"
        "   AND ($1::text IS NULL OR environment_id = $1)),"
        " orphaned AS (SELECT * FROM locks l"
        "   WHERE NOT slipstream_serves(l.environment_id, l.task_identifier, l.locked_version, l.region))"
        " UPDATE runs r SET locked_version = NULL FROM orphaned o"
        " WHERE r.environment_id = o.environment_id AND r.locked_version = o.locked_version"
        " AND r.task_identifier = o.task_identifier AND r.region IS NOT DISTINCT FROM o.region"
        f" AND r.status IN {_WAITING} AND NOT r.lock_to_version"
        " RETURNING r.environment_id",
        environment_id,
    )
    return sorted({r["environment_id"] for r in rows})


async def schedules_fire(conn: Conn, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (environment, task) pairs' schedules fire now (migration 0030's rule)."""
    if not pairs:
        return set()
    rows = await conn.fetch(
        "SELECT p.e, p.t FROM unnest($1::text[], $2::text[]) AS p(e, t) WHERE slipstream_schedule_fires(p.e, p.t)",
        [e for e, _ in pairs], [t for _, t in pairs])
    return {(r["e"], r["t"]) for r in rows}
