"""Queues: the concurrency limits declared in code, registered by workers."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from slipstream_core.definitions import QueueDefinition
from slipstream_proto import QueueKeyState, QueueState, RateLimitState

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def declare(conn: Conn, environment_id: str, queues: list[QueueDefinition]) -> None:
    """Create the queues or update their limits (a changed limit applies to the next claim)."""
    if not queues:
        return
    columns = [f for f in QueueDefinition.__struct_fields__ if f != "name"]
    await conn.execute(
        f"INSERT INTO queues (environment_id, name, {', '.join(columns)})"
        " SELECT $1, * FROM unnest($2::text[], $3::int[], $4::int[], $5::int[], $6::float8[], $7::int[],"
        "   $8::float8[])"
        " ON CONFLICT (environment_id, name) DO UPDATE SET"
        f" {', '.join(f'{c} = EXCLUDED.{c}' for c in columns)}, updated_at = now()",
        environment_id,
        *([getattr(q, field) for q in queues] for field in QueueDefinition.__struct_fields__),
    )


async def set_limit(conn: Conn, environment_id: str, name: str, concurrency_limit: int) -> None:
    """Create the queue with this concurrency limit, or give it this limit (its other limits stay)."""
    await conn.execute(
        "INSERT INTO queues (environment_id, name, concurrency_limit) VALUES ($1, $2, $3)"
        " ON CONFLICT (environment_id, name) DO UPDATE SET concurrency_limit = EXCLUDED.concurrency_limit,"
        " updated_at = now()",
        environment_id, name, concurrency_limit)


async def states(conn: Conn, environment_id: str) -> list[QueueState]:
    """Every queue of the environment (declared, or with runs waiting or running), with counts per key."""
    limits = {r["name"]: r for r in await conn.fetch("SELECT * FROM queues WHERE environment_id = $1", environment_id)}
    # Each half reads only its partial index (runs_ready_by_key, runs_holding_slots), never the
    # environment's finished runs: the dashboard's queues page went from 147 to 18 ms with a million
    # runs in the environment (docs/benchmarks.md, Dashboard pages).
    # Concurrency keys are never empty, so '' stands for "no key" in the grouping.
    counts = await conn.fetch(
        "SELECT queue, nullif(k, '') AS concurrency_key, sum(running)::int AS running, sum(queued)::int AS queued"
        " FROM (SELECT queue, coalesce(concurrency_key, '') AS k, 0 AS running, count(*) AS queued FROM runs"
        "   WHERE environment_id = $1 AND status = 'QUEUED' GROUP BY 1, 2"
        " UNION ALL SELECT queue, coalesce(concurrency_key, ''), count(*), 0 FROM runs"
        "   WHERE environment_id = $1 AND status IN ('DEQUEUED', 'EXECUTING') GROUP BY 1, 2) AS c"
        " GROUP BY queue, k",
        environment_id,
    )
    by_queue: dict[str, QueueState] = {}
    for name in sorted(set(limits) | {r["queue"] for r in counts}):
        row = limits.get(name)
        by_queue[name] = QueueState(name=name, running=0, queued=0, keys=[]) if row is None else QueueState(
            name=name, running=0, queued=0, keys=[], paused=row["paused"],
            concurrency_limit=row["concurrency_limit"], per_key_limit=row["per_key_limit"],
            rate_limit=_rate(row["rate_limit"], row["rate_period"]),
            per_key_rate_limit=_rate(row["per_key_rate_limit"], row["per_key_rate_period"]))
    for r in counts:
        state = by_queue[r["queue"]]
        state.running += r["running"]
        state.queued += r["queued"]
        if r["concurrency_key"] is not None:
            state.keys.append(QueueKeyState(key=r["concurrency_key"], running=r["running"], queued=r["queued"]))
    return list(by_queue.values())


def _rate(limit: int | None, period: float | None) -> RateLimitState | None:
    return None if limit is None or period is None else RateLimitState(limit=limit, period=period)


async def set_paused(conn: Conn, environment_id: str, name: str, paused: bool) -> None:
    """Pause a queue (its runs stay QUEUED) or resume it; an unknown name is created."""
    await conn.execute(
        "INSERT INTO queues (environment_id, name, paused) VALUES ($1, $2, $3)"
        " ON CONFLICT (environment_id, name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()",
        environment_id,
        name,
        paused,
    )


async def prune_starts(conn: Conn) -> int:
    """Forget the starts that no rate window counts any more; returns how many."""
    result: str = await conn.execute(
        "DELETE FROM queue_starts s WHERE s.started_at < now() - make_interval(secs => coalesce("
        "  (SELECT greatest(q.rate_period, q.per_key_rate_period) FROM queues q"
        "   WHERE q.environment_id = s.environment_id AND q.name = s.queue), 0))"
    )
    return int(result.split()[-1])
