"""Attempts: how an attempt starts, suspends and ends; one statement for many runs at once.

A supervisor takes runs and starts them in one statement (`claims.take`, which runs the same
start as `start` right after its claim), and records the ends that are ready together with one
`finish` (a group commit). Each row is guarded by the
run's status and attempt number, so a repeated or stale write changes nothing.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from slipstream_platform.ids import new_id
from slipstream_platform.store.runs import _RETURNING, END_STRETCH, Conn, Transition, _transitions


class StartRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Start the DEQUEUED run `run_id` on this worker; its task's defaults fill what the trigger left open."""

    run_id: str
    default_max_attempts: int
    default_max_duration: int | None = None
    default_machine: str | None = None


class StartedAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """A run that is EXECUTING on this worker, with what its worker process needs."""

    run_id: str
    environment_id: str
    status: str
    updated_at: datetime
    task_identifier: str
    payload_json: str | None
    attempt_id: str
    attempt_number: int
    max_attempts: int
    max_duration: int | None
    # Time already spent executing (earlier stretches of a resumed attempt, earlier attempts).
    executed_seconds: float
    machine: str
    queue: str
    tags: list[str]
    created_at: datetime
    traceparent: str | None
    root_run_id: str | None
    depth: int
    # The run waited and goes on with its attempt.
    resuming: bool
    # The run's metadata when the attempt started (JSON), if it has any.
    metadata_json: str | None = None

    @property
    def transition(self) -> Transition:
        return Transition(self.run_id, self.environment_id, self.status, self.updated_at)


async def start(conn: Conn, *, worker_id: str, starts: list[StartRequest]) -> list[StartedAttempt]:
    """DEQUEUED -> EXECUTING for each run still DEQUEUED on this worker: a new attempt, or the
    same attempt again for a run resuming from a wait.

    Runs that are no longer ours to start (a repeated dispatch, or requeued meanwhile) are
    left out. The statement is the function `slipstream_start` (migration 0014), which
    `claims.take` runs right after its claim. The commit does not wait for the WAL flush: a
    start lost with Postgres leaves its run DEQUEUED, and the sweeper requeues it (ADR 0008).
    """
    if not starts:
        return []
    rows = await conn.fetch(
        "SELECT * FROM slipstream_start($1, $2, $3, $4, $5, $6)",
        worker_id,
        [s.run_id for s in starts],
        [s.default_max_attempts for s in starts],
        [s.default_max_duration for s in starts],
        [s.default_machine for s in starts],
        [new_id("attempt") for _ in starts],
    )
    return [started_of(row) for row in rows]


def started_of(row: asyncpg.Record) -> StartedAttempt:
    """The attempt a row of `slipstream_start` (or `slipstream_take`) describes."""
    return StartedAttempt(
        run_id=row["id"], environment_id=row["environment_id"], status=row["status"],
        updated_at=row["updated_at"], task_identifier=row["task_identifier"], payload_json=row["payload"],
        attempt_id=row["attempt_id"], attempt_number=row["attempt_count"], max_attempts=row["max_attempts"],
        max_duration=row["max_duration"], executed_seconds=row["executed_seconds"], machine=row["machine"],
        queue=row["queue"], tags=list(row["tags"]), created_at=row["created_at"], traceparent=row["traceparent"],
        root_run_id=row["root_run_id"], depth=row["depth"], resuming=row["resuming"],
        metadata_json=row["metadata"],
    )


class AttemptEnd(msgspec.Struct, frozen=True, kw_only=True):
    """How one attempt ends, as the store writes it (see `lifecycle.end_of_attempt`)."""

    run_id: str
    attempt_number: int
    # The run's next status: COMPLETED, QUEUED (a retry), or a final failure.
    status: str
    # COMPLETED, FAILED or CRASHED.
    attempt_status: str
    output_json: str | None = None
    # An output over 512 KB: its object in the payload store (output_json is None then).
    output_packet: str | None = None
    error_json: str | None = None
    # A retry: when the run is ready again, and on which machine.
    retry_at: datetime | None = None
    retry_machine: str | None = None


async def finish(conn: Conn, ends: list[AttemptEnd]) -> list[Transition]:
    """Record how attempts ended (each only if its run is still EXECUTING that attempt), in one
    durable statement; return the runs' status changes."""
    changed, _, _ = await _finish(conn, ends)
    return changed


# How many of the runs that wait `finish_each` names (any ready ones of each environment).
WAITING_NAMED = 9


async def _finish(conn: Conn, ends: list[AttemptEnd]) -> tuple[list[Transition], list[str], list[str]]:
    """`finish`; runs of those environments that were QUEUED and ready when it ran (a few of
    each); and the runs that ended for good and have a parent (whose wait may be over)."""
    if not ends:
        return [], [], []
    rows = await conn.fetch(
        "WITH e AS (SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],"
        "   $7::timestamptz[], $8::text[], $9::text[]) AS e(run_id, attempt_number, status, attempt_status, output,"
        "   error, retry_at, retry_machine, output_packet)),"
        f" r AS (UPDATE runs r SET {END_STRETCH}, status = e.status, updated_at = now(),"
        "   output = CASE WHEN e.status = 'COMPLETED' THEN e.output::jsonb ELSE r.output END,"
        "   output_packet = CASE WHEN e.status = 'COMPLETED' THEN e.output_packet ELSE r.output_packet END,"
        "   error = e.error::jsonb,"
        "   available_at = CASE WHEN e.status = 'QUEUED' THEN coalesce(e.retry_at, now()) ELSE r.available_at END,"
        "   machine = coalesce(e.retry_machine, r.machine),"
        "   finished_at = CASE WHEN e.status = 'QUEUED' THEN NULL ELSE now() END"
        "   FROM e WHERE r.id = e.run_id AND r.id = ANY($1::text[]) AND r.status = 'EXECUTING'"
        "   AND r.attempt_count = e.attempt_number"
        f"   {_RETURNING}, r.parent_run_id),"
        " a AS (UPDATE attempts t SET status = e.attempt_status, error = e.error::jsonb, completed_at = now()"
        "   FROM e WHERE t.run_id = e.run_id AND t.run_id = ANY($1::text[]) AND t.number = e.attempt_number"
        "   AND e.run_id IN (SELECT id FROM r))"
        " SELECT r.*, ARRAY(SELECT q.id FROM runs q WHERE q.environment_id = r.environment_id"
        f"   AND q.status = 'QUEUED' AND q.available_at <= now() LIMIT {WAITING_NAMED}) AS waiting FROM r",
        [e.run_id for e in ends],
        [e.attempt_number for e in ends],
        [e.status for e in ends],
        [e.attempt_status for e in ends],
        [e.output_json for e in ends],
        [e.error_json for e in ends],
        [e.retry_at for e in ends],
        [e.retry_machine for e in ends],
        [e.output_packet for e in ends],
    )
    children = [r["id"] for r in rows if r["parent_run_id"] is not None and r["status"] != "QUEUED"]
    return _transitions(rows), list(dict.fromkeys(w for r in rows for w in r["waiting"])), children


class Finished(msgspec.Struct, frozen=True):
    """What `finish_each` recorded, and the ends it could not record, by run id; `waiting`:
    runs that were QUEUED and ready in those environments (the freed slots have work), at most
    `WAITING_NAMED` of each environment (more may wait when that many are named)."""

    changed: list[Transition]
    failed: dict[str, Exception]
    waiting: list[str] = []
    # Runs that ended for good and have a parent: `waitpoints.resume_parents` may resume it.
    children: list[str] = []


async def finish_each(pool: asyncpg.Pool, ends: list[AttemptEnd], unavailable: tuple[type[BaseException], ...]
                      ) -> Finished:
    """`finish` for a group, falling back to one end at a time if the group's statement fails
    (one end that cannot be stored, say an output Postgres refuses, must not fail the others).
    Errors in `unavailable` (Postgres away) are raised: the caller retries the whole group."""
    try:
        changed, waiting, children = await _finish(pool, ends)
        return Finished(changed, {}, waiting, children)
    except unavailable:
        raise
    except Exception:
        if len(ends) == 1:
            raise
    changed = []
    failed: dict[str, Exception] = {}
    waiting = []
    children = []
    for end in ends:
        try:
            one, more, ended = await _finish(pool, [end])
        except unavailable:
            raise
        except Exception as exc:
            failed[end.run_id] = exc
            continue
        changed += one
        waiting += [w for w in more if w not in waiting]
        children += ended
    return Finished(changed, failed, waiting, children)


async def suspend(conn: Conn, *, run_id: str, attempt_number: int) -> Transition | None:
    """EXECUTING -> WAITING at a waitpoint: the run releases its slot; the attempt goes on later."""
    row = await conn.fetchrow(
        f"UPDATE runs r SET status = 'WAITING', updated_at = now(), {END_STRETCH}"
        f" WHERE id = $1 AND status = 'EXECUTING' AND attempt_count = $2 {_RETURNING}",
        run_id,
        attempt_number,
    )
    return _transitions([row])[0] if row else None
