"""Queues: the concurrency limits declared in code, registered by workers."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from slipstream_proto import QueueKeyState, QueueState

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def declare(conn: Conn, environment_id: str, queues: list[tuple[str, int | None]]) -> None:
    """Create the queues or update their limits (a changed limit applies to the next claim)."""
    if not queues:
        return
    await conn.execute(
        "INSERT INTO queues (environment_id, name, concurrency_limit)"
        " SELECT $1, n, l FROM unnest($2::text[], $3::int[]) AS x(n, l)"
        " ON CONFLICT (environment_id, name)"
        " DO UPDATE SET concurrency_limit = EXCLUDED.concurrency_limit, updated_at = now()",
        environment_id,
        [name for name, _ in queues],
        [limit for _, limit in queues],
    )



async def states(conn: Conn, environment_id: str) -> list[QueueState]:
    """Every queue of the environment (declared, or with runs waiting or running), with counts per key."""
    limits = {r["name"]: r for r in await conn.fetch(
        "SELECT name, concurrency_limit, paused FROM queues WHERE environment_id = $1", environment_id)}
    counts = await conn.fetch(
        "SELECT queue, concurrency_key,"
        " count(*) FILTER (WHERE status IN ('DEQUEUED', 'EXECUTING')) AS running,"
        " count(*) FILTER (WHERE status = 'QUEUED') AS queued"
        " FROM runs WHERE environment_id = $1 AND status IN ('QUEUED', 'DEQUEUED', 'EXECUTING')"
        " GROUP BY queue, concurrency_key",
        environment_id,
    )
    by_queue: dict[str, QueueState] = {}
    for name in sorted(set(limits) | {r["queue"] for r in counts}):
        row = limits.get(name)
        by_queue[name] = QueueState(name=name, running=0, queued=0, paused=bool(row and row["paused"]),
                                    concurrency_limit=row["concurrency_limit"] if row else None, keys=[])
    for r in counts:
        state = by_queue[r["queue"]]
        state.running += r["running"]
        state.queued += r["queued"]
        if r["concurrency_key"] is not None:
            state.keys.append(QueueKeyState(key=r["concurrency_key"], running=r["running"], queued=r["queued"]))
    return list(by_queue.values())


async def set_paused(conn: Conn, environment_id: str, name: str, paused: bool) -> None:
    """Pause a queue (its runs stay QUEUED) or resume it; an unknown name is created."""
    await conn.execute(
        "INSERT INTO queues (environment_id, name, paused) VALUES ($1, $2, $3)"
        " ON CONFLICT (environment_id, name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()",
        environment_id,
        name,
        paused,
    )
