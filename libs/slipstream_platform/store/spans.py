"""Run spans: the finished OpenTelemetry spans of runs' traces (`SLIPSTREAM_OTEL_EXPORTER=postgres`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from slipstream_core.ipc import SpanRecord

# A trace's timeline shows at most this many spans (the earliest).
MAX_SPANS_PER_TRACE = 2000


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


async def insert(conn: asyncpg.Connection | asyncpg.Pool, spans: Sequence[SpanRecord]) -> None:
    """Store finished spans in one statement; a span stored already is left as it is."""
    if not spans:
        return
    await conn.execute(
        "INSERT INTO run_spans (trace_id, span_id, parent_span_id, run_id, name, service, started_at,"
        " ended_at, duration_ns, status, attributes, events)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::timestamptz[], $8::timestamptz[], $9::bigint[], $10::text[], $11::jsonb[], $12::jsonb[])"
        " ON CONFLICT DO NOTHING",
        [s.trace_id for s in spans],
        [s.span_id for s in spans],
        [s.parent_span_id for s in spans],
        [s.run_id for s in spans],
        [s.name.replace("\x00", "") for s in spans],
        [s.service for s in spans],
        [_time(s.start_ns) for s in spans],
        [_time(s.end_ns) for s in spans],
        [max(0, s.end_ns - s.start_ns) for s in spans],
        [s.status for s in spans],
        [json.dumps(s.attributes, default=str).replace("\\u0000", "") for s in spans],
        [json.dumps(s.events, default=str).replace("\\u0000", "") for s in spans],
    )


async def for_run(
    conn: asyncpg.Connection | asyncpg.Pool, run_id: str, trace_id: str, span_id: str,
    limit: int = MAX_SPANS_PER_TRACE,
) -> list[asyncpg.Record]:
    """A run's spans in the order they began: in its trace, the span that triggered it (named by
    its traceparent) and every span about it or about one of its descendants (children are
    always of the parent's environment), so not those of other items of its batch or of other
    runs its caller triggered in the same trace."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "WITH RECURSIVE tree AS (SELECT id FROM runs WHERE id = $1"
        " UNION SELECT r.id FROM runs r JOIN tree t ON r.parent_run_id = t.id)"
        " SELECT s.span_id, s.parent_span_id, s.run_id, s.name, s.service, s.started_at, s.ended_at,"
        " s.duration_ns, s.status, s.attributes, s.events"
        " FROM run_spans s"
        " WHERE s.trace_id = $2 AND (s.span_id = $3 OR s.run_id IN (SELECT id FROM tree))"
        " ORDER BY s.started_at, s.span_id LIMIT $4",
        run_id,
        trace_id,
        span_id,
        limit,
    )
    return rows
