"""Claims: the ready runs a worker may start now, within every limit.

The rules (docs/queues.md, ADR 0006) are one SQL function, `slipstream_claim` (migration
0013), so that a claim is one round trip: it takes the environment's advisory lock, reads
the environment's state and claims (QUEUED -> DEQUEUED), in one statement. A supervisor
`take`s: the claim and the start of what it claimed (-> EXECUTING) in one transaction and one
round trip (`slipstream_take`, migration 0014; ADR 0009). Its commit does not wait for the WAL
flush (ADR 0008): a take lost with Postgres leaves its runs QUEUED, to be taken again.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from slipstream_platform.ids import new_ids
from slipstream_platform.store.attempts import StartedAttempt, started_of
from slipstream_platform.store.runs import Conn, Transition


class ClaimedRun(msgspec.Struct, frozen=True, kw_only=True):
    """A run a claim moved to DEQUEUED on a worker."""

    id: str
    environment_id: str
    status: str
    updated_at: datetime
    task_identifier: str
    traceparent: str | None
    queue: str
    concurrency_key: str | None
    # Its queue is rate limited: its start was counted in the queue's window.
    rated: bool

    @property
    def transition(self) -> Transition:
        return Transition(self.id, self.environment_id, self.status, self.updated_at)


class Claim(msgspec.Struct, frozen=True):
    """What one claim took, and whether another claim may find more (`more`: the walk
    stopped at the free slots, but some were left)."""

    runs: list[ClaimedRun]
    more: bool


async def claim(conn: Conn, *, worker_id: str, environment_id: str, task_ids: list[str], capacity: int) -> Claim:
    """Claim for one worker: up to its free slots, round-robin across the environment's
    (queue, key) copies from where its last claim stopped, oldest first within a copy.

    A run is taken only while its worker has a free slot; its queue is not paused; its key's
    copy of the queue is under its limit (`per_key_limit`, or `concurrency_limit` when the
    queue has no `per_key_limit`) and its per-key rate limit; its queue is under its cap
    across keys, its rate limit and the environment's base limit; and the environment is
    under base x burst. Run it on its own, not inside a transaction with durable writes: it
    turns off the synchronous commit of the transaction it runs in.
    """
    rows = await conn.fetch("SELECT * FROM slipstream_claim($1, $2, $3, $4)", worker_id, environment_id,
                            task_ids, capacity)
    return Claim([_claimed(r) for r in rows], bool(rows) and rows[0]["more"])


class TaskDefaults(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker's tasks fill in where a trigger left it open, one entry per task id."""

    task_ids: list[str]
    max_attempts: list[int]
    max_durations: list[int | None]
    machines: list[str]


class Take(msgspec.Struct, frozen=True):
    """The attempts one take started; `rated`: some start was counted by a rate limit (its
    window may be full now); `more`: the claim stopped at the free slots but left runs."""

    started: list[StartedAttempt]
    rated: bool
    more: bool


async def take(conn: Conn, *, worker_id: str, environment_id: str, tasks: TaskDefaults, capacity: int) -> Take:
    """Claim for one worker, as `claim`, and start what was claimed: QUEUED -> EXECUTING with a
    new attempt (or the same attempt, for a run resuming from a wait), in one round trip.

    The claim fills the worker's `capacity` less the runs Postgres counts as executing on it.
    Like `claim`, it turns off the synchronous commit of the transaction it runs in.
    """
    rows = await conn.fetch("SELECT * FROM slipstream_take($1, $2, $3, $4, $5, $6, $7, $8)", worker_id,
                            environment_id, tasks.task_ids, capacity, tasks.max_attempts, tasks.max_durations,
                            tasks.machines, new_ids("attempt", capacity))
    return Take([started_of(r) for r in rows], any(r["rated"] for r in rows), bool(rows) and rows[0]["more"])


def _claimed(row: asyncpg.Record) -> ClaimedRun:
    return ClaimedRun(id=row["id"], environment_id=row["environment_id"], status=row["status"],
                      updated_at=row["updated_at"], task_identifier=row["task_identifier"],
                      traceparent=row["traceparent"], queue=row["queue"], concurrency_key=row["concurrency_key"],
                      rated=row["rated"])


async def seconds_until_available(conn: Conn) -> float | None:
    """`next_available_at` as seconds from now on Postgres's own clock (so a local clock that
    differs from Postgres's neither wakes early in a loop nor late)."""
    value = await conn.fetchval("SELECT extract(epoch FROM ($1::timestamptz - clock_timestamp()))::float8",
                                await next_available_at(conn))
    return None if value is None else float(value)


async def next_available_at(conn: Conn) -> datetime | None:
    """When the earliest QUEUED run that is backing off becomes ready, or the earliest start
    counted by a rate limit leaves its window, whichever is first. Only a retry backs off, so
    only runs that had an attempt are read (the index `runs_backing_off`, migration 0020)."""
    value: datetime | None = await conn.fetchval(
        "SELECT least("
        " (SELECT available_at FROM runs WHERE status = 'QUEUED' AND attempt_count > 0 AND available_at > now()"
        "   ORDER BY available_at LIMIT 1),"
        " (SELECT min(s.started_at + make_interval(secs => p.period)) FROM queue_starts s"
        "   JOIN queues q ON q.environment_id = s.environment_id AND q.name = s.queue"
        "   CROSS JOIN LATERAL (VALUES (q.rate_period), (q.per_key_rate_period)) AS p(period)"
        "   WHERE s.started_at + make_interval(secs => p.period) > now()))"
    )
    return value
