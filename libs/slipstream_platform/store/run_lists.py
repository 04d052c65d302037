"""Pages of runs, newest first (`GET /api/v1/runs`), by keyset: a page starts after (or
before) a run, so runs created while a client pages never shift or repeat what it reads.

Every page reads one index in (created_at DESC, id DESC) order and stops after the page
(migration 0022):

- a batch: `runs_by_batch`; a schedule: `runs_by_schedule` (each holds only its own runs);
- task identifiers: `runs_by_task_created`, one ordered read per task, merged;
- tags: `runs_by_tag` (GIN, migration 0024) for a rare tag, its runs sorted; a common tag is
  found by the walk below, where it is dense (the planner picks, from the array statistics);
- anything else: `runs_env_created`, the environment's runs by age.

Other filters (status, tag, queue, version, created before or after) are checked on the rows
that read finds, so a page costs the runs it passes over to fill itself: nothing for a filter
most runs match, more for a rare status in a long history (docs/runs.md, docs/benchmarks.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import msgspec

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

_COLUMNS = (
    "id, task_identifier, status, created_at, updated_at, started_at, finished_at, delayed_until,"
    " expired_at, ttl_seconds, tags, metadata::text AS metadata, version, queue, idempotency_key, depth,"
    " batch_id, schedule_id, replayed_from_run_id, parent_run_id, root_run_id, attempt_count, machine,"
    " concurrency_key, max_duration"
)


class RunFilter(msgspec.Struct, frozen=True, kw_only=True):
    """What a listing keeps; an empty list keeps every value."""

    statuses: list[str] = []
    task_identifiers: list[str] = []
    versions: list[str] = []
    tags: list[str] = []  # runs with any of these tags
    queues: list[str] = []
    batch_id: str | None = None
    schedule_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


class CursorNotFound(Exception):
    """`page[after]` or `page[before]` names no run of this environment."""


class RunsPage(msgspec.Struct, frozen=True):
    """A page of run rows, newest first, and the cursors of the pages beside it."""

    rows: list[asyncpg.Record]
    next: str | None  # page[after] of the next (older) page
    previous: str | None  # page[before] of the previous (newer) page


class Tree(msgspec.Struct, frozen=True):
    """A run's root and parent rows (None for a root run) and its first children, oldest first."""

    root: asyncpg.Record | None
    parent: asyncpg.Record | None
    children: list[asyncpg.Record]


MAX_CHILDREN = 100


async def related(conn: Conn, environment_id: str, run_id: str, *, parent_id: str | None,
                  root_id: str | None) -> Tree:
    """The rows around a run in its tree, in listed form (one statement; `runs_by_parent`)."""
    rows = await conn.fetch(
        f"(SELECT 'family' AS kind, {_COLUMNS} FROM runs WHERE environment_id = $1 AND id = ANY($3::text[]))"
        f" UNION ALL (SELECT 'child', {_COLUMNS} FROM runs WHERE environment_id = $1 AND parent_run_id = $2"
        f" ORDER BY created_at, id LIMIT {MAX_CHILDREN})",
        environment_id, run_id, [i for i in (parent_id, root_id) if i is not None])
    family = {r["id"]: r for r in rows if r["kind"] == "family"}
    return Tree(root=family.get(root_id) if root_id else None, parent=family.get(parent_id) if parent_id else None,
                children=[r for r in rows if r["kind"] == "child"])


async def page(conn: Conn, environment_id: str, where: RunFilter, *, size: int, after: str | None = None,
               before: str | None = None) -> RunsPage:
    """One page of `size` runs: the newest, or the ones just older than `after`, or just newer
    than `before` (at most one of the two)."""
    assert not (after and before)
    cursor = after or before
    cursor_at = None
    if cursor is not None:
        cursor_at = await conn.fetchval("SELECT created_at FROM runs WHERE id = $1 AND environment_id = $2",
                                        cursor, environment_id)
        if cursor_at is None:
            raise CursorNotFound(cursor)
    sql, args = statement(environment_id, where, size=size, cursor_at=cursor_at, after=after, before=before)
    rows = list(await conn.fetch(sql, *args))
    more = len(rows) > size
    rows = rows[:size]
    if before is not None:
        rows.reverse()
        # Newest first again; a page before `before` always has `before` after it.
        return RunsPage(rows, rows[-1]["id"] if rows else None, rows[0]["id"] if more and rows else None)
    return RunsPage(rows, rows[-1]["id"] if more else None, rows[0]["id"] if after is not None and rows else None)


def statement(environment_id: str, where: RunFilter, *, size: int, cursor_at: datetime | None = None,
              after: str | None = None, before: str | None = None) -> tuple[str, list[Any]]:
    """The SQL of one page and its arguments: `size` + 1 rows (whether another page follows);
    `cursor_at` is when the `after` or `before` run was created."""
    args: list[Any] = [environment_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    conds: list[str] = []
    cursor = after or before
    if cursor is not None:
        conds.append(f"(created_at, id) {'<' if after else '>'} ({arg(cursor_at)}::timestamptz, {arg(cursor)}::text)")
    if where.statuses:
        conds.append(f"status = ANY({arg(where.statuses)}::text[])")
    if where.versions:
        conds.append(f"version = ANY({arg(where.versions)}::text[])")
    if where.tags:
        conds.append(f"tags && {arg(where.tags)}::text[] AND tags <> '{{}}'")  # runs_by_tag holds tagged runs
    if where.queues:
        conds.append(f"queue = ANY({arg(where.queues)}::text[])")
    if where.batch_id is not None:
        conds.append(f"batch_id = {arg(where.batch_id)}")
    if where.schedule_id is not None:
        conds.append(f"schedule_id = {arg(where.schedule_id)}")
    if where.created_from is not None:
        conds.append(f"created_at >= {arg(where.created_from)}")
    if where.created_to is not None:
        conds.append(f"created_at <= {arg(where.created_to)}")
    order = "DESC" if before is None else "ASC"
    tail = f" ORDER BY created_at {order}, id {order} LIMIT {arg(size + 1)}"
    common = "".join(f" AND {c}" for c in conds)
    if not where.task_identifiers:
        return f"SELECT {_COLUMNS} FROM runs WHERE environment_id = $1{common}{tail}", args
    # One ordered read of the task index per task, merged (a single `= ANY` read would sort);
    # each task once, or its runs would repeat.
    branches = [f"(SELECT {_COLUMNS} FROM runs WHERE environment_id = $1 AND task_identifier = {arg(task)}"
                f"{common}{tail})" for task in dict.fromkeys(where.task_identifiers)]
    return f"SELECT * FROM ({' UNION ALL '.join(branches)}) AS r{tail}", args
