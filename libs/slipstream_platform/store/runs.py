"""Runs: every status change is one guarded statement, so racing writers cannot both win.

Functions that change statuses return the `Transition`s they committed (once the caller's
transaction commits), which the caller publishes as `RunUpdated` events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import msgspec
from slipstream_core import run_errors
from slipstream_proto.statuses import RunStatus

from slipstream_platform.ids import new_id
from slipstream_platform.statemachine import sources_of

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

_RETURNING = "RETURNING r.id, r.environment_id, r.status, r.updated_at"

# Every status change the statements below make, as (from, to). Each is an edge of the run
# state machine (a unit test checks it); the statements' WHERE clauses reject any other.
EDGES: frozenset[tuple[str, str]] = frozenset({
    ("PENDING_VERSION", "QUEUED"),      # promote_pending_version
    ("DELAYED", "QUEUED"),              # promote_due_delayed
    ("DELAYED", "PENDING_VERSION"),     # promote_due_delayed
    ("QUEUED", "DEQUEUED"),             # claims.claim (slipstream_claim, migration 0013)
    ("DEQUEUED", "EXECUTING"),          # attempts.start
    ("EXECUTING", "WAITING"),           # attempts.suspend
    ("WAITING", "QUEUED"),              # waitpoints.resume_due
    ("EXECUTING", "COMPLETED"),         # attempts.finish
    ("EXECUTING", "QUEUED"),            # attempts.finish (a retry), recover_from_stopped_workers, recover_orphans
    ("EXECUTING", "FAILED"),            # attempts.finish
    ("EXECUTING", "CRASHED"),           # attempts.finish
    ("EXECUTING", "TIMED_OUT"),         # attempts.finish
    ("EXECUTING", "SYSTEM_FAILURE"),    # attempts.finish, recover_from_stopped_workers, recover_orphans
    ("DEQUEUED", "QUEUED"),             # requeue_dequeued, recover_from_stopped_workers
    ("QUEUED", "EXPIRED"),              # expire_due
    ("PENDING_VERSION", "EXPIRED"),     # expire_due
    *((status, "CANCELED") for status in sources_of(RunStatus.CANCELED)),  # cancel
})


class Transition(msgspec.Struct, frozen=True):
    """A committed status change of one run."""

    run_id: str
    environment_id: str
    status: str
    updated_at: datetime


def _transitions(rows: list[asyncpg.Record]) -> list[Transition]:
    """Transitions from rows with id, environment_id, status and updated_at."""
    return [Transition(r["id"], r["environment_id"], r["status"], r["updated_at"]) for r in rows]


# Whether a live worker may take the run: in its region, of its locked version or of the
# current one (0030, 0031).
_SERVED = "slipstream_serves(r.environment_id, r.task_identifier, r.locked_version, r.region)"


class NewRun(msgspec.Struct, frozen=True, kw_only=True):
    """A run to create (see `triggering.new_run`); `status` None: QUEUED if a live worker
    serves its task, else PENDING_VERSION."""

    environment_id: str
    task_identifier: str
    status: str | None
    payload_json: str | None
    queue: str | None  # None: the task's own queue (as its worker registered it), else task/<id>
    concurrency_key: str | None = None
    tags: list[str] = []
    metadata_json: str | None = None
    max_attempts: int | None = None
    priority_ms: int = 0
    delayed_until: datetime | None = None
    traceparent: str | None = None
    max_duration: int | None = None
    parent_run_id: str | None = None
    root_run_id: str | None = None
    depth: int = 0
    machine: str | None = None
    ttl_seconds: int | None = None
    idempotency_key: str | None = None
    debounce_key: str | None = None
    debounce_deadline: datetime | None = None
    request_id: str | None = None
    batch_id: str | None = None
    schedule_id: str | None = None  # the schedule whose tick created the run
    payload_packet: str | None = None  # the payload's object when it is stored outside the row (payload_json None)
    locked_version: str | None = None  # `lockToVersion`: only workers of this version take the run
    region: str | None = None  # None: the environment's default region
    id: str = msgspec.field(default_factory=lambda: new_id("run"))


_INSERT = (
    "INSERT INTO runs AS r (id, environment_id, task_identifier, status, payload, queue,"
    " concurrency_key, tags, metadata, max_attempts, priority_ms, delayed_until, traceparent,"
    " max_duration, parent_run_id, root_run_id, depth, machine, ttl_seconds, expires_at,"
    " idempotency_key, debounce_key, debounce_deadline, request_id, batch_id, queue_ts, schedule_id, payload_packet,"
    " locked_version, lock_to_version, region)"
)
_ON_REQUEST_ID = " ON CONFLICT (environment_id, request_id) WHERE request_id IS NOT NULL DO NOTHING "


async def insert(conn: Conn, run: NewRun) -> Transition | None:
    """Create a run in its first status; None if a run with this request id exists already."""
    assert run.status is not None
    row = await conn.fetchrow(
        _INSERT + " VALUES ($1, $2, $3, $4, $5::jsonb,"
        # No queue given: the task's own (as its worker registered it), else task/<id>.
        " coalesce($6::text, (SELECT d.queue FROM task_definitions d WHERE d.environment_id = $2"
        "   AND d.task_identifier = $3), 'task/' || $3),"
        " $7, $8, $9::jsonb, $10, $11, $12, $13, $14, $15, $16, $17, $18,"
        " $19::int, CASE WHEN $4 <> 'DELAYED' THEN now() + make_interval(secs => $19::int) END, $20, $21, $22,"
        " $23, $24, now() - make_interval(secs => $11::bigint / 1000.0), $25, $26, $27::text, $27 IS NOT NULL, $28)"
        + _ON_REQUEST_ID + _RETURNING,
        run.id, run.environment_id, run.task_identifier, run.status, run.payload_json, run.queue,
        run.concurrency_key, run.tags, run.metadata_json, run.max_attempts, run.priority_ms, run.delayed_until,
        run.traceparent, run.max_duration, run.parent_run_id, run.root_run_id, run.depth, run.machine,
        run.ttl_seconds, run.idempotency_key, run.debounce_key, run.debounce_deadline, run.request_id, run.batch_id,
        run.schedule_id, run.payload_packet, run.locked_version, run.region,
    )
    return _transitions([row])[0] if row else None


_rows_encoder = msgspec.json.Encoder()
# The columns of NewRun as `json_to_recordset` reads them from the runs sent as one JSON array.
_RECORD_TYPES = {"max_attempts": "int", "priority_ms": "bigint", "delayed_until": "timestamptz", "max_duration": "int",
                 "depth": "int", "ttl_seconds": "int", "debounce_deadline": "timestamptz", "tags": "jsonb"}
_RECORD = ", ".join(f"{c} {_RECORD_TYPES.get(c, 'text')}" for c in NewRun.__struct_fields__)


async def insert_many(conn: Conn, runs: list[NewRun]) -> list[Transition]:
    """Create many runs with one statement (set-based: a batch of 1,000 is one INSERT); runs
    whose request id made a run already are left out. Returned in the order given."""
    if not runs:
        return []
    rows = await conn.fetch(
        # The runs go as one JSON text (msgspec encodes 1,000 in a fraction of a millisecond; as
        # 28 arrays, asyncpg's encoding of their 28,000 elements took 8 ms).
        f"WITH v AS (SELECT * FROM ROWS FROM (json_to_recordset($1::json) AS ({_RECORD}))"
        f" WITH ORDINALITY AS v({', '.join(NewRun.__struct_fields__)}, n)),"
        # Once per task (lock and region) of the batch, not per run: its registered queue and whether it is served
        # (MATERIALIZED: inlined, the planner called slipstream_serves once per run, 18 of a batch's 50 ms).
        " t AS MATERIALIZED (SELECT k.environment_id, k.task_identifier, k.locked_version, k.region, d.queue,"
        "   slipstream_serves(k.environment_id, k.task_identifier, k.locked_version, k.region) AS served"
        "   FROM (SELECT DISTINCT environment_id, task_identifier, locked_version, region FROM v) AS k"
        "   LEFT JOIN task_definitions d ON d.environment_id = k.environment_id"
        "   AND d.task_identifier = k.task_identifier)"
        + _INSERT +
        " SELECT v.id, v.environment_id, v.task_identifier, s.status, v.payload_json::jsonb,"
        "   coalesce(v.queue, t.queue, 'task/' || v.task_identifier), v.concurrency_key,"
        "   CASE WHEN v.tags = '[]'::jsonb THEN '{}'::text[]"
        "     ELSE ARRAY(SELECT jsonb_array_elements_text(v.tags)) END,"
        "   v.metadata_json::jsonb, v.max_attempts,"
        "   v.priority_ms, v.delayed_until, v.traceparent, v.max_duration, v.parent_run_id, v.root_run_id, v.depth,"
        "   v.machine, v.ttl_seconds,"
        "   CASE WHEN s.status <> 'DELAYED' THEN now() + make_interval(secs => v.ttl_seconds) END,"
        "   v.idempotency_key, v.debounce_key, v.debounce_deadline, v.request_id, v.batch_id,"
        "   now() - make_interval(secs => v.priority_ms / 1000.0), v.schedule_id, v.payload_packet,"
        "   v.locked_version, v.locked_version IS NOT NULL, v.region"
        " FROM v JOIN t ON t.environment_id = v.environment_id AND t.task_identifier = v.task_identifier"
        "   AND t.locked_version IS NOT DISTINCT FROM v.locked_version AND t.region IS NOT DISTINCT FROM v.region"
        " CROSS JOIN LATERAL (SELECT coalesce(v.status, CASE WHEN t.served THEN 'QUEUED' ELSE 'PENDING_VERSION' END)"
        "   AS status) AS s"
        " ORDER BY v.n" + _ON_REQUEST_ID + _RETURNING,
        _rows_encoder.encode(runs).decode(),
    )
    order = {run.id: i for i, run in enumerate(runs)}
    return sorted(_transitions(rows), key=lambda t: order[t.run_id])


async def by_request_id(conn: Conn, environment_id: str, request_id: str) -> str | None:
    """The run a request id created."""
    value: str | None = await conn.fetchval(
        "SELECT id FROM runs WHERE environment_id = $1 AND request_id = $2", environment_id, request_id
    )
    return value


async def push_debounced(
    conn: Conn,
    *,
    environment_id: str,
    task_identifier: str,
    debounce_key: str,
    delay_seconds: int,
    trailing: Any = None,
) -> Transition | None:
    """Delay the still-DELAYED run with this debounce key: start `delay_seconds` from now, but
    never earlier than planned nor past its deadline. `trailing` (a RunPlan) replaces its data."""
    fields = ""
    args: list[Any] = [environment_id, task_identifier, debounce_key, delay_seconds]
    if trailing is not None:
        fields = (", payload = $5::jsonb, metadata = $6::jsonb, tags = $7, max_attempts = $8,"
                  " max_duration = $9, machine = $10, payload_packet = $11")
        args += [trailing.payload_json, trailing.metadata_json, trailing.tags, trailing.max_attempts,
                 trailing.max_duration, trailing.machine, trailing.payload_packet]
    row = await conn.fetchrow(
        "UPDATE runs r SET updated_at = now(),"
        " delayed_until = greatest(delayed_until, least(now() + make_interval(secs => $4::int),"
        "   coalesce(debounce_deadline, 'infinity')))" + fields +
        " WHERE id = (SELECT id FROM runs WHERE environment_id = $1 AND task_identifier = $2"
        "   AND debounce_key = $3 AND status = 'DELAYED' ORDER BY created_at LIMIT 1)"
        f" AND status = 'DELAYED' {_RETURNING}",
        *args,
    )
    return _transitions([row])[0] if row else None


async def reschedule(conn: Conn, environment_id: str, run_id: str, delayed_until: datetime) -> Transition | None:
    """A DELAYED run starts at another time; None if the run is not DELAYED."""
    row = await conn.fetchrow(
        "UPDATE runs r SET delayed_until = $3, updated_at = now()"
        f" WHERE id = $1 AND environment_id = $2 AND status = 'DELAYED' {_RETURNING}",
        run_id,
        environment_id,
        delayed_until,
    )
    return _transitions([row])[0] if row else None


async def replay(conn: Conn, environment_id: str, run_id: str, new_run_id: str,
                 request_id: str | None) -> Transition | None:
    """A new run of the same task with the run's payload, tags, metadata, queue, concurrency
    key and the limits it ran with, linked to it by `replayed_from_run_id`; a new root run,
    queued now (or PENDING_VERSION). None if there is no such run, or if `request_id` made a
    run already (`by_request_id` finds it)."""
    row = await conn.fetchrow(
        _INSERT.replace(", region)", ", region, replayed_from_run_id)") +
        " SELECT $3, r.environment_id, r.task_identifier,"
        # Unlocked: a replay runs on the current version, in the run's region.
        "   CASE WHEN slipstream_serves(r.environment_id, r.task_identifier, NULL, r.region) THEN 'QUEUED'"
        "     ELSE 'PENDING_VERSION' END, r.payload, r.queue,"
        "   r.concurrency_key, r.tags, r.metadata, r.max_attempts, r.priority_ms, NULL, NULL, r.max_duration,"
        "   NULL, NULL, 0, r.machine, r.ttl_seconds, now() + make_interval(secs => r.ttl_seconds), NULL, NULL, NULL,"
        "   $4, NULL, now() - make_interval(secs => r.priority_ms / 1000.0), NULL, r.payload_packet, NULL, false,"
        "   r.region, r.id"
        " FROM runs r WHERE r.id = $1 AND r.environment_id = $2" + _ON_REQUEST_ID + _RETURNING,
        run_id, environment_id, new_run_id, request_id,
    )
    return _transitions([row])[0] if row else None


MAX_TAGS = 10
MAX_TAG_LENGTH = 128


class TooManyTags(Exception):
    """Adding these tags would give the run more than `MAX_TAGS`."""


async def add_tags(conn: asyncpg.Connection, environment_id: str, run_id: str, tags: list[str]
                   ) -> tuple[list[str], Transition | None] | None:
    """Add tags the run does not have yet (in the order given); its tags after and the change
    (None if it had them all), or None if there is no such run. TooManyTags if it would have
    more than 10 (nothing is added)."""
    async with conn.transaction():
        current = await conn.fetchval("SELECT tags FROM runs WHERE id = $1 AND environment_id = $2 FOR UPDATE",
                                      run_id, environment_id)
        if current is None:
            return None
        merged = list(current) + [t for t in dict.fromkeys(tags) if t not in current]
        if len(merged) > MAX_TAGS:
            raise TooManyTags(f"a run may have at most {MAX_TAGS} tags: it has {len(current)}, and "
                              f"{len(merged) - len(current)} of these are new")
        if len(merged) == len(current):
            return merged, None
        row = await conn.fetchrow(f"UPDATE runs r SET tags = $2, updated_at = now() WHERE id = $1 {_RETURNING}",
                                  run_id, merged)
        return merged, _transitions([row])[0]


async def get(conn: Conn, environment_id: str, run_id: str) -> asyncpg.Record | None:
    """The whole run row, if it exists in this environment."""
    return await conn.fetchrow(
        "SELECT * FROM runs WHERE id = $1 AND environment_id = $2", run_id, environment_id
    )


async def statuses(conn: Conn, run_ids: list[str]) -> dict[str, datetime]:
    """`updated_at` of each run that exists."""
    rows = await conn.fetch("SELECT id, updated_at FROM runs WHERE id = ANY($1)", run_ids)
    return {r["id"]: r["updated_at"] for r in rows}


async def promote_pending_version(
    conn: Conn, environment_id: str | None = None
) -> list[Transition]:
    """PENDING_VERSION -> QUEUED for every run whose task a live worker now serves."""
    rows = await conn.fetch(
        "UPDATE runs r SET status = 'QUEUED', available_at = now(), updated_at = now()"
        " WHERE r.status = 'PENDING_VERSION' AND ($1::text IS NULL OR r.environment_id = $1)"
        f" AND {_SERVED} {_RETURNING}",
        environment_id,
    )
    return _transitions(rows)


async def promote_due_delayed(conn: Conn, limit: int = 1000) -> list[Transition]:
    """DELAYED -> QUEUED (or PENDING_VERSION if no worker serves the task) once due."""
    rows = await conn.fetch(
        "WITH due AS (SELECT id FROM runs WHERE status = 'DELAYED' AND delayed_until <= now()"
        " ORDER BY delayed_until LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " UPDATE runs r SET"
        f" status = CASE WHEN {_SERVED} THEN 'QUEUED' ELSE 'PENDING_VERSION' END,"
        " queue_ts = now() - make_interval(secs => r.priority_ms / 1000.0),"
        " expires_at = now() + make_interval(secs => r.ttl_seconds),"
        " available_at = now(), updated_at = now()"
        f" FROM due WHERE r.id = due.id {_RETURNING}",
        limit,
    )
    return _transitions(rows)


async def next_due(conn: Conn) -> datetime | None:
    """When the next DELAYED run is due, or the next QUEUED or PENDING_VERSION run expires."""
    value: datetime | None = await conn.fetchval(
        # First entries of indexes, in their order: `min()` read all of `runs_delayed` when the
        # statistics said few runs were delayed (its order then looked no cheaper than a full read).
        "SELECT least((SELECT delayed_until FROM runs WHERE status = 'DELAYED' ORDER BY delayed_until LIMIT 1),"
        " (SELECT expires_at FROM runs WHERE status IN ('QUEUED', 'PENDING_VERSION') AND attempt_count = 0"
        "   AND expires_at IS NOT NULL ORDER BY expires_at LIMIT 1))"
    )
    return value


async def expire_due(conn: Conn, limit: int = 1000) -> list[Transition]:
    """EXPIRED for runs whose time-to-live ran out before their first attempt started."""
    rows = await conn.fetch(
        "WITH due AS (SELECT id FROM runs WHERE status IN ('QUEUED', 'PENDING_VERSION')"
        "   AND attempt_count = 0 AND expires_at <= now()"
        "   ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " UPDATE runs r SET status = 'EXPIRED', expired_at = now(), finished_at = now(), updated_at = now(),"
        "   error = jsonb_build_object('name', $2::text, 'message',"
        "     format('the run did not start within its ttl of %s seconds', r.ttl_seconds))"
        f" FROM due WHERE r.id = due.id {_RETURNING}",
        limit,
        run_errors.EXPIRED,
    )
    return _transitions(rows)


# Ends an executing stretch: its time counts against max_duration.
END_STRETCH = (
    "executed_ms = r.executed_ms"
    " + coalesce((extract(epoch FROM now() - r.segment_started_at) * 1000)::bigint, 0),"
    " segment_started_at = NULL"
)


async def requeue_dequeued(
    conn: Conn, *, worker_id: str | None = None, older_than_seconds: float | None = None
) -> list[Transition]:
    """DEQUEUED -> QUEUED for runs a worker claimed but never started (a safety net: a take
    claims and starts in one transaction, so none is left DEQUEUED by it)."""
    rows = await conn.fetch(
        "UPDATE runs r SET status = 'QUEUED', worker_id = NULL, updated_at = now()"
        " WHERE status = 'DEQUEUED' AND ($1::text IS NULL OR worker_id = $1)"
        " AND ($2::float8 IS NULL OR dequeued_at < now() - make_interval(secs => $2))"
        f" {_RETURNING}",
        worker_id,
        older_than_seconds,
    )
    return _transitions(rows)


# An attempt that was lost: its run goes QUEUED for the next attempt if any is left, else ends
# SYSTEM_FAILURE, with the error $1 and the stretch it executed counted.
_RETRY_OR_FAIL = (
    " status = CASE WHEN r.attempt_count < coalesce(r.max_attempts, 1) THEN 'QUEUED' ELSE 'SYSTEM_FAILURE' END,"
    " finished_at = CASE WHEN r.attempt_count < coalesce(r.max_attempts, 1) THEN NULL ELSE now() END,"
    " error = $1::jsonb, worker_id = NULL, available_at = now(), updated_at = now(),"
    f" {END_STRETCH}"
)


async def recover_from_stopped_workers(conn: asyncpg.Connection) -> list[Transition]:
    """Runs left on workers that stopped: never started -> QUEUED; executing -> retried.

    An executing run whose attempts are used up ends SYSTEM_FAILURE.
    """
    dequeued = await conn.fetch(
        "UPDATE runs r SET status = 'QUEUED', worker_id = NULL, updated_at = now()"
        " FROM workers w WHERE w.id = r.worker_id AND w.stopped_at IS NOT NULL"
        f" AND r.status = 'DEQUEUED' {_RETURNING}"
    )
    executing = await conn.fetch(
        "WITH r AS (UPDATE runs r SET" + _RETRY_OR_FAIL +
        "   FROM workers w WHERE w.id = r.worker_id AND w.stopped_at IS NOT NULL"
        f"   AND r.status = 'EXECUTING' {_RETURNING}, r.attempt_count),"
        " a AS (UPDATE attempts t SET status = 'FAILED', error = $1::jsonb, completed_at = now()"
        "   FROM r WHERE t.run_id = r.id AND t.number = r.attempt_count"
        "   AND t.status = 'EXECUTING')"
        " SELECT * FROM r",
        run_errors.STALLED,
    )
    return _transitions(list(dequeued) + list(executing))


async def recover_orphans(
    conn: Conn, *, worker_id: str, keep: list[str], older_than_seconds: float
) -> list[Transition]:
    """EXECUTING runs of a live worker that it no longer tracks (their end could not be
    recorded): retried at once if attempts are left, else SYSTEM_FAILURE. Runs in `keep`,
    and runs changed within `older_than_seconds`, are left alone."""
    rows = await conn.fetch(
        "WITH r AS (UPDATE runs r SET" + _RETRY_OR_FAIL +
        "   WHERE r.worker_id = $2 AND r.status = 'EXECUTING' AND NOT (r.id = ANY($3::text[]))"
        f"   AND r.updated_at < now() - make_interval(secs => $4) {_RETURNING}, r.attempt_count),"
        " a AS (UPDATE attempts t SET status = 'FAILED', error = $1::jsonb, completed_at = now()"
        "   FROM r WHERE t.run_id = r.id AND t.number = r.attempt_count"
        "   AND t.status = 'EXECUTING')"
        " SELECT * FROM r",
        run_errors.LOST,
        worker_id,
        keep,
        older_than_seconds,
    )
    return _transitions(rows)


async def list_attempts(conn: Conn, run_id: str) -> list[asyncpg.Record]:
    """A run's attempts, first first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, number, status, error, created_at, started_at, completed_at"
        " FROM attempts WHERE run_id = $1 ORDER BY number",
        run_id,
    )
    return rows


class Canceled(msgspec.Struct, frozen=True):
    """A run that `cancel` ended, and the worker that was executing it, if any."""

    transition: Transition
    executing_worker_id: str | None


async def canceled_among(conn: Conn, run_ids: list[str]) -> list[str]:
    """The runs of `run_ids` that are CANCELED (a supervisor checks what it executes)."""
    rows = await conn.fetch("SELECT id FROM runs WHERE id = ANY($1::text[]) AND status = 'CANCELED'", run_ids)
    return [r["id"] for r in rows]


async def cancel(conn: asyncpg.Connection, environment_id: str, run_id: str) -> list[Canceled]:
    """CANCELED for the run and every unfinished run below it; runs already final stay as they are.

    Must run in a transaction. Returns what changed (empty when the run had already finished).
    """
    # The run first, in a statement of its own: a batch being added to it holds it, and the
    # tree below is read once that batch's children are committed (`batching._open_parent`).
    await conn.execute("SELECT 1 FROM runs WHERE id = $1 AND environment_id = $2 FOR UPDATE", run_id, environment_id)
    rows = await conn.fetch(
        "WITH RECURSIVE tree AS ("
        "   SELECT id FROM runs WHERE id = $1 AND environment_id = $2 AND status = ANY($3::text[])"
        "   UNION ALL SELECT c.id FROM runs c JOIN tree t ON c.parent_run_id = t.id),"
        " open AS (SELECT r.id, r.status AS was, r.worker_id FROM runs r JOIN tree USING (id)"
        "   WHERE r.status = ANY($3::text[]) FOR UPDATE OF r),"
        " done AS (UPDATE runs r SET status = 'CANCELED', finished_at = now(), updated_at = now()"
        "   FROM open WHERE r.id = open.id"
        "   RETURNING r.id, r.environment_id, r.status, r.updated_at, open.was, open.worker_id),"
        " a AS (UPDATE attempts t SET status = 'CANCELED', completed_at = now()"
        "   FROM done WHERE t.run_id = done.id AND t.status = 'EXECUTING')"
        " SELECT * FROM done",
        run_id,
        environment_id,
        sources_of(RunStatus.CANCELED),
    )
    return [
        Canceled(
            Transition(r["id"], r["environment_id"], r["status"], r["updated_at"]),
            r["worker_id"] if r["was"] in ("EXECUTING", "DEQUEUED") else None,
        )
        for r in rows
    ]
