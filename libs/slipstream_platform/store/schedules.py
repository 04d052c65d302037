"""Schedules (cron) and the task definitions workers registered."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from slipstream_platform.ids import new_id

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def register_tasks(
    conn: Conn, environment_id: str, tasks: list[tuple[str, bool]], task_queues: dict[str, str] | None = None
) -> None:
    """Remember the tasks a worker serves, which are scheduled tasks, and their queues."""
    task_queues = task_queues or {}
    await conn.execute(
        "INSERT INTO task_definitions (environment_id, task_identifier, scheduled, queue)"
        " SELECT $1, t, s, q FROM unnest($2::text[], $3::bool[], $4::text[]) AS x(t, s, q)"
        " ON CONFLICT (environment_id, task_identifier)"
        " DO UPDATE SET scheduled = EXCLUDED.scheduled, queue = EXCLUDED.queue, updated_at = now()",
        environment_id,
        [t for t, _ in tasks],
        [s for _, s in tasks],
        [task_queues.get(t) for t, _ in tasks],
    )


async def task_kind(conn: Conn, environment_id: str, task_identifier: str) -> bool | None:
    """True for a scheduled task, False for another task, None for a task no worker registered."""
    value: bool | None = await conn.fetchval(
        "SELECT scheduled FROM task_definitions WHERE environment_id = $1 AND task_identifier = $2",
        environment_id,
        task_identifier,
    )
    return value


async def upsert(
    conn: Conn,
    *,
    environment_id: str,
    task_identifier: str,
    type: str,
    cron: str,
    timezone: str,
    external_id: str | None,
    deduplication_key: str,
    next_run_at: datetime,
) -> asyncpg.Record:
    """Create a schedule, or update the one with this deduplication key."""
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO schedules (id, environment_id, task_identifier, type, cron, timezone, external_id,"
        " deduplication_key, next_run_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (environment_id, deduplication_key) DO UPDATE SET task_identifier = EXCLUDED.task_identifier,"
        " cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, external_id = EXCLUDED.external_id,"
        " next_run_at = CASE WHEN schedules.cron = EXCLUDED.cron AND schedules.timezone = EXCLUDED.timezone"
        "   THEN schedules.next_run_at ELSE EXCLUDED.next_run_at END,"
        " updated_at = now() RETURNING *",
        new_id("sched"),
        environment_id,
        task_identifier,
        type,
        cron,
        timezone,
        external_id,
        deduplication_key,
        next_run_at,
    )
    return row


async def get(conn: Conn, environment_id: str, schedule_id: str) -> asyncpg.Record | None:
    """One schedule of the environment."""
    return await conn.fetchrow(
        "SELECT * FROM schedules WHERE id = $1 AND environment_id = $2", schedule_id, environment_id
    )


async def page(conn: Conn, environment_id: str, page: int, per_page: int) -> tuple[list[asyncpg.Record], int]:
    """A page of the environment's schedules (oldest first) and how many there are."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM schedules WHERE environment_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
        environment_id,
        per_page,
        (page - 1) * per_page,
    )
    count: int = await conn.fetchval("SELECT count(*) FROM schedules WHERE environment_id = $1", environment_id)
    return rows, count


async def update(conn: Conn, environment_id: str, schedule_id: str, **fields: Any) -> asyncpg.Record | None:
    """Change some columns of a schedule (names are column names)."""
    names = sorted(fields)
    assignments = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
    return await conn.fetchrow(
        f"UPDATE schedules SET {assignments}, updated_at = now() WHERE id = $1 AND environment_id = $2 RETURNING *",
        schedule_id,
        environment_id,
        *(fields[name] for name in names),
    )


async def delete(conn: Conn, environment_id: str, schedule_id: str) -> bool:
    """Remove a schedule; False if there was none."""
    status = await conn.execute("DELETE FROM schedules WHERE id = $1 AND environment_id = $2",
                                schedule_id, environment_id)
    return bool(status == "DELETE 1")


async def remove_declarative_except(conn: Conn, environment_id: str, keep: list[str]) -> None:
    """Delete the environment's declarative schedules whose deduplication key is not in `keep`."""
    await conn.execute(
        "DELETE FROM schedules WHERE environment_id = $1 AND type = 'DECLARATIVE'"
        " AND NOT (deduplication_key = ANY($2::text[]))",
        environment_id,
        keep,
    )


async def due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Active schedules whose next tick has come, locked (skipping ones another replica holds)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT s.*, e.type AS environment_type FROM schedules s JOIN environments e ON e.id = s.environment_id"
        " WHERE s.active AND s.next_run_at <= $1 ORDER BY s.next_run_at LIMIT $2 FOR UPDATE OF s SKIP LOCKED",
        now,
        limit,
    )
    return rows


async def advance(conn: Conn, schedule_id: str, last_run_at: datetime, next_run_at: datetime) -> None:
    """Record a fired tick and the next one."""
    await conn.execute(
        "UPDATE schedules SET last_run_at = $2, next_run_at = $3, updated_at = now() WHERE id = $1",
        schedule_id,
        last_run_at,
        next_run_at,
    )


async def advance_many(conn: Conn, fired: list[tuple[str, datetime, datetime]]) -> None:
    """Record many fired ticks (schedule id, tick, next tick) with one statement."""
    if not fired:
        return
    await conn.execute(
        "UPDATE schedules s SET last_run_at = f.last, next_run_at = f.next, updated_at = now()"
        " FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS f(id, last, next)"
        " WHERE s.id = f.id AND s.id = ANY($1::text[])",
        *(list(column) for column in zip(*fired, strict=True)),
    )


async def next_due(conn: Conn) -> datetime | None:
    """When the next active schedule is due."""
    value: datetime | None = await conn.fetchval("SELECT min(next_run_at) FROM schedules WHERE active")
    return value
