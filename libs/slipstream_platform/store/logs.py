"""Run logs: the lines `logger` wrote inside attempts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg

# More than this per attempt is dropped, with one line that says how many were.
MAX_LINES_PER_ATTEMPT = 5000


async def insert(
    conn: asyncpg.Connection | asyncpg.Pool, run_id: str, attempt_number: int, lines: list[dict[str, Any]]
) -> None:
    """Store an attempt's lines in one statement."""
    if not lines:
        return
    if len(lines) > MAX_LINES_PER_ATTEMPT:
        dropped = len(lines) - MAX_LINES_PER_ATTEMPT
        last = lines[MAX_LINES_PER_ATTEMPT - 1]
        lines = lines[: MAX_LINES_PER_ATTEMPT - 1] + [
            {"level": "WARN", "message": f"{dropped + 1} more log lines were dropped", "attributes": {},
             "timestamp": last["timestamp"]}
        ]
    await conn.execute(
        "INSERT INTO run_logs (run_id, attempt_number, level, message, attributes, logged_at)"
        " SELECT $1, $2, l, m, a::jsonb, t"
        " FROM unnest($3::text[], $4::text[], $5::text[], $6::timestamptz[]) AS x(l, m, a, t)",
        run_id,
        attempt_number,
        [line["level"] for line in lines],
        [line["message"] for line in lines],
        [json.dumps(line["attributes"]) for line in lines],
        [datetime.fromtimestamp(line["timestamp"], UTC) for line in lines],
    )


async def for_run(conn: asyncpg.Connection | asyncpg.Pool, run_id: str, limit: int = 10_000) -> list[asyncpg.Record]:
    """A run's lines in the order they were written."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT attempt_number, level, message, attributes, logged_at FROM run_logs"
        " WHERE run_id = $1 ORDER BY id LIMIT $2",
        run_id,
        limit,
    )
    return rows
