"""Batches: the record of one request that triggered many runs, and its status from its runs."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from slipstream_proto.statuses import FINAL_STATUSES

from slipstream_platform.store.runs import Conn


class BatchRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A batch as stored, with its runs' ids in the order of its items."""

    id: str
    environment_id: str
    task_identifier: str | None
    run_ids: list[str]
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    # False while more chunks of items may come (a streamed batch).
    sealed: bool = True
    parent_run_id: str | None = None
    # The runs its items stood for without creating them (an idempotency key's run).
    cached_run_ids: list[str] = []


class BatchView(msgspec.Struct, frozen=True, kw_only=True):
    """A batch with its status, read from its runs."""

    batch: BatchRecord
    status: str
    # How many of its runs are in each status.
    counts: dict[str, int]


_COLUMNS = ("id, environment_id, task_identifier, run_ids, idempotency_key, created_at, updated_at, sealed,"
            " parent_run_id, cached_run_ids")

# An open batch that gets no chunk for this long is ABORTED: its client stopped sending.
ABANDONED_SECONDS = 600


def _record(row: object) -> BatchRecord:
    return msgspec.convert(dict(row), BatchRecord)  # type: ignore[call-overload]


async def insert(conn: Conn, *, id: str, environment_id: str, task_identifier: str | None, run_ids: list[str],
                 cached_run_ids: list[str], parent_run_id: str | None, idempotency_key: str | None,
                 idempotency_expires_at: datetime | None, request_id: str | None, sealed: bool = True) -> BatchRecord:
    """Store a new batch (in the transaction that created its runs); `cached_run_ids`: the runs
    its items stood for without creating them; `sealed` False: more chunks may come."""
    row = await conn.fetchrow(
        "INSERT INTO batches (id, environment_id, task_identifier, run_ids, cached_run_ids, parent_run_id,"
        " idempotency_key, idempotency_expires_at, request_id, sealed)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        f" RETURNING {_COLUMNS}",
        id, environment_id, task_identifier, run_ids, cached_run_ids, parent_run_id, idempotency_key,
        idempotency_expires_at, request_id, sealed,
    )
    if request_id is not None:
        await add_chunk(conn, id, request_id, 0, len(run_ids))
    return _record(row)


async def for_append(conn: Conn, environment_id: str, batch_id: str) -> BatchRecord | None:
    """The batch, locked until the transaction ends, for a chunk to be added to it."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM batches WHERE environment_id = $1 AND id = $2 FOR UPDATE",
                              environment_id, batch_id)
    return _record(row) if row else None


async def waited_by(conn: Conn, environment_id: str, batch_id: str, parent_run_id: str) -> str | None:
    """Why `parent_run_id` cannot wait for the batch (a streamed one it made), or None if it can."""
    row = await conn.fetchrow("SELECT sealed, parent_run_id FROM batches WHERE environment_id = $1 AND id = $2",
                              environment_id, batch_id)
    if row is None:
        return f"batch {batch_id} not found"
    if row["parent_run_id"] != parent_run_id:
        return f"batch {batch_id} was not triggered by run {parent_run_id}"
    if not row["sealed"]:
        return f"batch {batch_id} is still open (its last chunk was not sent)"
    return None


async def chunk(conn: Conn, batch_id: str, request_id: str) -> tuple[int, int] | None:
    """Where the runs of the chunk a request id added start, and how many (a retried request)."""
    row = await conn.fetchrow("SELECT first_index, item_count FROM batch_chunks WHERE batch_id = $1"
                              " AND request_id = $2", batch_id, request_id)
    return (row["first_index"], row["item_count"]) if row else None


async def add_chunk(conn: Conn, batch_id: str, request_id: str, first_index: int, count: int) -> None:
    await conn.execute("INSERT INTO batch_chunks (batch_id, request_id, first_index, item_count)"
                       " VALUES ($1, $2, $3, $4)", batch_id, request_id, first_index, count)


async def append(conn: Conn, batch_id: str, run_ids: list[str], cached_run_ids: list[str], seal: bool) -> None:
    """Add a chunk's runs to the batch, in order (and seal it with its last chunk)."""
    await conn.execute(
        "UPDATE batches SET run_ids = run_ids || $2::text[],"
        " cached_run_ids = ARRAY(SELECT DISTINCT unnest(cached_run_ids || $3::text[])),"
        " sealed = sealed OR $4, updated_at = now() WHERE id = $1",
        batch_id, run_ids, cached_run_ids, seal)


async def by_request_id(conn: Conn, environment_id: str, request_id: str) -> BatchRecord | None:
    """The batch a request id made already (a retried request)."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM batches WHERE environment_id = $1 AND request_id = $2",
                              environment_id, request_id)
    return _record(row) if row else None


async def by_idempotency_key(conn: Conn, environment_id: str, key: str) -> BatchRecord | None:
    """The batch a live batch idempotency key stands for."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM batches WHERE environment_id = $1 AND idempotency_key = $2"
        " AND idempotency_expires_at > now()", environment_id, key)
    return _record(row) if row else None


async def release_expired_key(conn: Conn, environment_id: str, key: str) -> None:
    """Let an expired batch idempotency key be used again (the old batch keeps its runs)."""
    await conn.execute("UPDATE batches SET idempotency_key = NULL, updated_at = now()"
                       " WHERE environment_id = $1 AND idempotency_key = $2 AND idempotency_expires_at <= now()",
                       environment_id, key)


def status_of(counts: dict[str, int], run_count: int, *, sealed: bool = True, abandoned: bool = False) -> str:
    """PENDING while more items may come (ABORTED if its client stopped sending them);
    PROCESSING while any run is unfinished; then COMPLETED if every run completed, ABORTED if
    every run was canceled, else PARTIAL_FAILED."""
    if not sealed:
        return "ABORTED" if abandoned else "PENDING"
    finished = sum(n for status, n in counts.items() if status in FINAL_STATUSES)
    if finished < run_count:
        return "PROCESSING"
    if counts.get("COMPLETED", 0) == run_count:
        return "COMPLETED"
    if counts.get("CANCELED", 0) == run_count:
        return "ABORTED"
    return "PARTIAL_FAILED"


async def get(conn: Conn, environment_id: str, batch_id: str) -> BatchView | None:
    """A batch of the environment with its status (None: no such batch)."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM batches WHERE environment_id = $1 AND id = $2",
                              environment_id, batch_id)
    if row is None:
        return None
    batch = _record(row)
    # An item that stood for an existing run counts that run once per item.
    rows = await conn.fetch(
        "SELECT r.status, count(*) AS n FROM unnest($1::text[]) AS i(id) JOIN runs r ON r.id = i.id"
        " GROUP BY r.status", batch.run_ids)
    counts = {r["status"]: int(r["n"]) for r in rows}
    abandoned = (datetime.now(UTC) - batch.updated_at).total_seconds() > ABANDONED_SECONDS
    return BatchView(batch=batch, status=status_of(counts, len(batch.run_ids), sealed=batch.sealed,
                                                   abandoned=abandoned), counts=counts)
