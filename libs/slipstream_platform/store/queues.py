"""Queues: the concurrency limits declared in code, registered by workers."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

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

