"""Run metadata: operations applied in Postgres, on the locked rows (migration 0025).

Concurrent updates of one run (several children updating their parent) each apply their
operations to the value the one before committed, so none is lost. One call first locks all
the runs it changes from the top of the tree down (as a cancel locks a tree), so it waits
for, but cannot deadlock with, another update or a cancel.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from slipstream_platform.store.runs import Transition

MAX_BYTES = 256 * 1024

_encoder = msgspec.json.Encoder()


async def forget_requests(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Forget request ids older than a day (a request is not sent again that late)."""
    await conn.execute("DELETE FROM metadata_requests WHERE created_at < now() - interval '1 day'")


class TooLarge(Exception):
    """The run's metadata would be over `MAX_BYTES` once serialized (nothing was stored)."""


class NoSuchRun(Exception):
    """A target run (the run, its parent or its root) does not exist in the environment."""


class Targets(msgspec.Struct, frozen=True):
    """The run and the ids of its parent and root (None at the top of its tree)."""

    run_id: str
    parent_id: str | None
    root_id: str | None


async def targets(conn: asyncpg.Connection | asyncpg.Pool, environment_id: str, run_id: str) -> Targets | None:
    """Whom the operations of a run go to: itself, its parent, its root."""
    row = await conn.fetchrow("SELECT parent_run_id, root_run_id FROM runs WHERE id = $1 AND environment_id = $2",
                              run_id, environment_id)
    if row is None:
        return None
    return Targets(run_id, row["parent_run_id"], row["root_run_id"])


class Updated(msgspec.Struct, frozen=True):
    """A run whose metadata changed: the change (its status is the same) and the metadata after."""

    transition: Transition
    metadata: dict[str, Any]


async def apply(conn: asyncpg.Connection, environment_id: str, changes: list[tuple[str, list[dict[str, Any]]]],
                request_id: str | None = None) -> dict[str, Updated]:
    """Apply each (run id, operations) in one transaction, in the order given; each run's
    change. TooLarge or NoSuchRun leaves every run as it was. A `request_id` is applied once:
    the same id again changes nothing (the SDK sends a request again when its answer was lost)."""
    after: dict[str, Updated] = {}
    async with conn.transaction():
        await conn.execute("SELECT 1 FROM runs WHERE id = ANY($1::text[]) AND environment_id = $2"
                           " ORDER BY depth, id FOR UPDATE", [run_id for run_id, ops in changes if ops], environment_id)
        if request_id is not None and changes and not await conn.fetchval(
                "INSERT INTO metadata_requests (run_id, request_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                " RETURNING true", changes[0][0], request_id):
            return after  # applied before
        for run_id, ops in changes:
            if not ops:
                continue
            text = await conn.fetchval(
                "SELECT slipstream_metadata_apply(metadata, $3::jsonb)::text FROM runs"
                " WHERE id = $1 AND environment_id = $2 FOR UPDATE",
                run_id, environment_id, _encoder.encode(ops).decode())
            if text is None:
                raise NoSuchRun(run_id)
            value = msgspec.json.decode(text)
            size = len(_encoder.encode(value))  # compact, as the SDK counts it
            if size > MAX_BYTES:
                raise TooLarge(f"the metadata of run {run_id} would be {size:,} bytes; the most is"
                               f" {MAX_BYTES:,} (256 KB)")
            # Never older than what subscribers saw (now() is when this transaction began).
            row = await conn.fetchrow(
                "UPDATE runs SET metadata = $2::jsonb,"
                " updated_at = greatest(clock_timestamp(), updated_at + interval '1 microsecond') WHERE id = $1"
                " RETURNING id, environment_id, status, updated_at", run_id, text)
            after[run_id] = Updated(Transition(row["id"], row["environment_id"], row["status"], row["updated_at"]),
                                    value)
    return after
