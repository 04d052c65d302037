"""Idempotency keys: which run a key of a task stands for, until it expires."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def lock(conn: asyncpg.Connection, *parts: str) -> None:
    """Serialise, until the transaction ends, every trigger that names the same key."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", "\x1f".join(parts))


async def find(conn: Conn, environment_id: str, task_identifier: str, key: str) -> asyncpg.Record | None:
    """The run a live key stands for (with its status), or None if the key is unknown or expired."""
    return await conn.fetchrow(
        "SELECT k.run_id, r.status FROM idempotency_keys k JOIN runs r ON r.id = k.run_id"
        " WHERE k.environment_id = $1 AND k.task_identifier = $2 AND k.key = $3 AND k.expires_at > now()",
        environment_id,
        task_identifier,
        key,
    )


async def bind(
    conn: Conn, environment_id: str, task_identifier: str, key: str, run_id: str, expires_at: datetime
) -> None:
    """Make the key stand for `run_id` until `expires_at` (replacing an expired or failed run)."""
    await conn.execute(
        "INSERT INTO idempotency_keys (environment_id, task_identifier, key, run_id, expires_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (environment_id, task_identifier, key)"
        " DO UPDATE SET run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at",
        environment_id,
        task_identifier,
        key,
        run_id,
        expires_at,
    )


async def reset(conn: Conn, environment_id: str, task_identifier: str, key: str) -> bool:
    """Forget a key, so the next trigger with it starts a new run; False if it was unknown."""
    status = await conn.execute(
        "DELETE FROM idempotency_keys WHERE environment_id = $1 AND task_identifier = $2 AND key = $3",
        environment_id,
        task_identifier,
        key,
    )
    return bool(status != "DELETE 0")


async def taken(conn: Conn, keys: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Which (environment, task, key) triples stand for a run already (live or not)."""
    if not keys:
        return set()
    rows = await conn.fetch(
        "SELECT environment_id, task_identifier, key FROM idempotency_keys"
        " WHERE (environment_id, task_identifier, key) IN"
        "   (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
        *(list(column) for column in zip(*keys, strict=True)),
    )
    return {(r["environment_id"], r["task_identifier"], r["key"]) for r in rows}


async def bind_many(conn: Conn, bindings: list[tuple[str, str, str, str, datetime]]) -> None:
    """Bind many (environment, task, key, run id, expires at) at once; keys bound already stay."""
    if not bindings:
        return
    await conn.execute(
        "INSERT INTO idempotency_keys (environment_id, task_identifier, key, run_id, expires_at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])"
        " ON CONFLICT (environment_id, task_identifier, key) DO NOTHING",
        *(list(column) for column in zip(*bindings, strict=True)),
    )
