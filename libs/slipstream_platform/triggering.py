"""Turning a trigger request into a new run: the rules every trigger path shares.

trigger-api uses it for HTTP triggers; the supervisor uses it for child runs created by
`trigger_and_wait` (in the same transaction that suspends the parent).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from slipstream_core.durations import DurationOutOfRange, parse_duration, resolve_delay
from slipstream_core.versions import REGION, VERSION
from slipstream_proto import TriggerOptions
from slipstream_proto.http import TASK_ID_PATTERN
from slipstream_proto.machines import MACHINE_PRESETS

from slipstream_platform import packets
from slipstream_platform.errors import PlatformError
from slipstream_platform.ids import new_id
from slipstream_platform.store import deployments, idempotency, workers
from slipstream_platform.store import queues as queue_store
from slipstream_platform.store import runs as run_store
from slipstream_platform.store.runs import NewRun, Transition

TASK_ID = re.compile(TASK_ID_PATTERN)

# Runs in DEVELOPMENT that nobody starts are dropped after this, unless a ttl is given.
DEVELOPMENT_TTL_SECONDS = 600

# How long an idempotency key stands for its run unless idempotencyKeyTTL says otherwise.
IDEMPOTENCY_KEY_TTL_SECONDS = 30 * 24 * 3600
# Keys the platform makes for itself; users' keys may not start with this.
RESERVED_KEY_PREFIX = "slipstream:"
TICK_KEY_PREFIX = RESERVED_KEY_PREFIX + "schedule:"

_encoder = msgspec.json.Encoder()


class TriggerRejected(PlatformError):
    """A trigger that breaks a rule: `status` is 400 (malformed) or 422 (against a rule)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DebouncePlan(msgspec.Struct, frozen=True, kw_only=True):
    """A checked `debounce` option."""

    key: str
    delay_seconds: int
    trailing: bool
    max_delay_seconds: int | None


class RunPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything about a new run except its environment, first status and parent."""

    task_identifier: str
    payload_json: str | None  # None: stored outside the row, as `payload_packet` (packets.offload)
    queue: str | None  # None: the task's own queue
    # The trigger-time form `queue: {name, concurrencyLimit}`: that queue gets this limit.
    queue_limit: int | None = None
    concurrency_key: str | None
    tags: list[str]
    metadata_json: str | None
    max_attempts: int | None
    priority_ms: int
    delayed_until: datetime | None
    max_duration: int | None
    machine: str | None
    ttl_seconds: int | None
    idempotency_key: str | None = None
    idempotency_ttl_seconds: int = IDEMPOTENCY_KEY_TTL_SECONDS
    debounce: DebouncePlan | None = None
    schedule_id: str | None = None  # a schedule's tick: the schedule
    payload_packet: str | None = None  # the stored payload's object (payload_json is None then)
    lock_to_version: str | None = None  # only workers of this version take the run
    region: str | None = None  # only workers of this region take it (None: the environment's default)


class Parent(msgspec.Struct, frozen=True):
    """The run a new run is a child of: its id, the root of its tree and its depth."""

    id: str
    root_run_id: str | None
    depth: int

    @classmethod
    def of(cls, run: asyncpg.Record) -> Parent:
        return cls(run["id"], run["root_run_id"], run["depth"])


class TriggerResult(msgspec.Struct, frozen=True):
    """The run a trigger stands for; `is_cached` when an existing run was returned."""

    run_id: str
    is_cached: bool
    transition: Transition | None


def duration_seconds(name: str, text: str) -> int:
    try:
        seconds = int(parse_duration(text).total_seconds())
    except DurationOutOfRange as exc:
        raise TriggerRejected(422, f"{name}: {exc}") from None
    except ValueError as exc:
        raise TriggerRejected(400, f"{name}: {exc}") from None
    if seconds < 1:
        raise TriggerRejected(422, f"{name} must be at least 1 second, got {text!r}")
    return seconds


def ttl_seconds(ttl: str | int | None, environment_type: str) -> int | None:
    """Seconds a run may stay queued before it expires (counted from when it is enqueued)."""
    if ttl is None:
        return DEVELOPMENT_TTL_SECONDS if environment_type == "DEVELOPMENT" else None
    if isinstance(ttl, int):
        seconds = ttl
    else:
        try:
            seconds = int(parse_duration(ttl).total_seconds())
        except ValueError as exc:
            raise TriggerRejected(400, f"ttl: {exc}") from None
    if seconds < 1:
        raise TriggerRejected(422, f"ttl must be at least 1 second, got {ttl!r}")
    return seconds


def plan_run(
    task_id: str, payload: Any, options: TriggerOptions | None, *, environment_type: str, now: datetime
) -> RunPlan:
    """Check a trigger's options and resolve them; TriggerRejected says what is wrong."""
    if not TASK_ID.match(task_id):
        raise TriggerRejected(400, f"task id {task_id[:140]!r} is not valid")
    options = options or TriggerOptions()
    tags = [options.tags] if isinstance(options.tags, str) else list(options.tags or [])
    if len(tags) > 10:
        raise TriggerRejected(422, f"a run may have at most 10 tags, got {len(tags)}")
    for tag in tags:
        if not tag or len(tag) > 128:
            raise TriggerRejected(422, f"each tag must be 1-128 characters, got {len(tag)}: {tag[:40]!r}")
    if options.max_attempts is not None and options.max_attempts < 1:
        raise TriggerRejected(422, f"maxAttempts must be at least 1, got {options.max_attempts}")
    if options.machine is not None and options.machine not in MACHINE_PRESETS:
        raise TriggerRejected(
            422, f"machine {options.machine!r} is not a preset; use one of {', '.join(MACHINE_PRESETS)}"
        )
    if options.max_duration is not None and options.max_duration < 1:
        raise TriggerRejected(422, f"maxDuration is in seconds and must be at least 1, got {options.max_duration}")
    if options.priority is not None and options.priority < 0:
        raise TriggerRejected(422, f"priority must be 0 or more seconds, got {options.priority}")
    if options.queue is not None and not 0 < len(options.queue.name) <= 128:
        raise TriggerRejected(422, f"queue.name must be 1-128 characters, got {len(options.queue.name)}")
    if options.queue is not None and options.queue.concurrency_limit is not None \
            and not 0 <= options.queue.concurrency_limit <= 1_000_000:
        raise TriggerRejected(422, f"queue.concurrencyLimit must be 0 or more, got {options.queue.concurrency_limit}")
    if options.concurrency_key is not None and not 0 < len(options.concurrency_key) <= 512:
        raise TriggerRejected(422, f"concurrencyKey must be 1-512 characters, got {len(options.concurrency_key)}")
    if options.idempotency_key is not None and not 0 < len(options.idempotency_key) <= 2048:
        raise TriggerRejected(422, f"idempotencyKey must be 1-2048 characters, got {len(options.idempotency_key)}")
    if options.idempotency_key is not None and options.idempotency_key.startswith(RESERVED_KEY_PREFIX):
        raise TriggerRejected(422, f"idempotencyKeys starting with {RESERVED_KEY_PREFIX!r} are reserved")
    if options.lock_to_version is not None and not VERSION.match(options.lock_to_version):
        raise TriggerRejected(422, f"lockToVersion {options.lock_to_version[:80]!r} is not a version: 1-64 letters,"
                                   " digits and ._+- starting with a letter or digit")
    if options.region is not None and not REGION.match(options.region):
        raise TriggerRejected(422, f"region {options.region[:80]!r} is not a region name: 1-64 lowercase letters,"
                                   " digits and -._ starting with a letter or digit")
    idempotency_ttl = IDEMPOTENCY_KEY_TTL_SECONDS
    if options.idempotency_key_ttl is not None:
        idempotency_ttl = duration_seconds("idempotencyKeyTTL", options.idempotency_key_ttl)
    debounce = None
    if options.debounce is not None:
        if options.delay is not None:
            raise TriggerRejected(422, "give either delay or debounce.delay, not both")
        if not options.debounce.key:
            raise TriggerRejected(422, "debounce.key must not be empty")
        debounce = DebouncePlan(
            key=options.debounce.key,
            delay_seconds=duration_seconds("debounce.delay", options.debounce.delay),
            trailing=options.debounce.mode == "trailing",
            max_delay_seconds=(duration_seconds("debounce.maxDelay", options.debounce.max_delay)
                               if options.debounce.max_delay else None),
        )
    delayed_until = None
    if debounce is not None:
        first_delay = min(debounce.delay_seconds, debounce.max_delay_seconds or debounce.delay_seconds)
        delayed_until = now + timedelta(seconds=first_delay)
    if options.delay is not None:
        try:
            delayed_until = resolve_delay(options.delay, now)
        except DurationOutOfRange as exc:
            raise TriggerRejected(422, f"delay: {exc}") from None
        except ValueError as exc:
            raise TriggerRejected(400, str(exc)) from None
    payload_json = _encoder.encode(payload).decode()
    if len(payload_json) > packets.PAYLOAD_LIMIT // 4 and packets.json_bytes(payload_json) > packets.PAYLOAD_LIMIT:
        raise TriggerRejected(413, f"the payload is {packets.json_bytes(payload_json)} bytes of JSON; the limit is"
                                   f" {packets.describe(packets.PAYLOAD_LIMIT)}")
    return RunPlan(
        task_identifier=task_id,
        payload_json=payload_json,
        queue=options.queue.name if options.queue else None,
        queue_limit=options.queue.concurrency_limit if options.queue else None,
        concurrency_key=options.concurrency_key,
        tags=tags,
        metadata_json=_encoder.encode(options.metadata).decode() if options.metadata is not None else None,
        max_attempts=options.max_attempts,
        priority_ms=(options.priority or 0) * 1000,
        delayed_until=delayed_until,
        max_duration=options.max_duration,
        machine=options.machine,
        ttl_seconds=ttl_seconds(options.ttl, environment_type),
        idempotency_key=options.idempotency_key,
        idempotency_ttl_seconds=idempotency_ttl,
        debounce=debounce,
        lock_to_version=options.lock_to_version,
        region=options.region,
    )


async def check_routing(conn: asyncpg.Connection | asyncpg.Pool, environment_id: str, plans: list[RunPlan],
                        first_index: int | None = None) -> None:
    """TriggerRejected (422, naming the known ones and, in a batch, the item) if a plan locks to
    a version the environment has never registered, or names a region it does not know."""
    if all(p.lock_to_version is None for p in plans) and all(p.region is None for p in plans):
        return
    versions = await deployments.known(conn, environment_id) if any(p.lock_to_version for p in plans) else []
    regions = [r["name"] for r in await workers.regions(conn, environment_id)] if any(p.region for p in plans) else []
    for i, plan in enumerate(plans):
        where = f"items[{first_index + i}]: " if first_index is not None else ""
        if plan.lock_to_version is not None and plan.lock_to_version not in versions:
            known = ", ".join(versions[:20]) or "none (no worker registered)"
            raise TriggerRejected(422, f"{where}lockToVersion {plan.lock_to_version!r} is not a version of this"
                                       f" environment; known: {known}")
        if plan.region is not None and plan.region not in regions:
            raise TriggerRejected(422, f"{where}region {plan.region!r} is not a region of this environment; known:"
                                       f" {', '.join(regions[:20])} (a region is known once a worker registers"
                                       " with `slipstream worker --region`)")


def first_status(plan: RunPlan, served: bool) -> str:
    """DELAYED, QUEUED, or PENDING_VERSION when no live worker serves the task yet."""
    if plan.delayed_until is not None:
        return "DELAYED"
    return "QUEUED" if served else "PENDING_VERSION"


async def offload(store: packets.PacketStore, plans: list[RunPlan], environment_id: str) -> list[RunPlan]:
    """The plans, those with a payload over 512 KB stored outside the row (ADR 0012). Nothing is
    stored if one upload fails (those made are deleted): 503, and no run is created."""
    out: list[RunPlan] = []
    made: list[str] = []
    try:
        for plan in plans:
            if plan.payload_json is None or not packets.too_large(plan.payload_json):
                out.append(plan)
                continue
            name = await store.put(environment_id, "payload", plan.payload_json)
            made.append(name)
            out.append(msgspec.structs.replace(plan, payload_json=None, payload_packet=name))
    except packets.StoreUnavailable as exc:
        for name in made:
            await store.delete(name)
        raise TriggerRejected(503, f"{exc}; no run was created, try again") from None
    return out


def payload_used(plan: RunPlan, result: TriggerResult) -> bool:
    """Whether the trigger's run row took the plan's payload: a new run, or a trailing debounce
    that gave an existing run its data."""
    return not result.is_cached or (plan.debounce is not None and plan.debounce.trailing
                                    and result.transition is not None)


def used_payloads(plans: list[RunPlan], results: list[TriggerResult]) -> set[str]:
    """The stored payloads that runs took, of plans and their results in the same order."""
    return {plan.payload_packet for plan, result in zip(plans, results, strict=False)
            if plan.payload_packet is not None and payload_used(plan, result)}


async def forget_unused(store: packets.PacketStore, plans: list[RunPlan], used: set[str] | None = None) -> None:
    """Delete the stored payloads of plans that made no run (a cached trigger, a failed insert)."""
    for plan in plans:
        if plan.payload_packet is not None and (used is None or plan.payload_packet not in used):
            await store.delete(plan.payload_packet)


async def trigger_run(
    conn: asyncpg.Connection,
    plan: RunPlan,
    *,
    environment_id: str,
    served: bool,
    parent: Parent | None,
    traceparent: str | None,
    request_id: str | None = None,
    batch_id: str | None = None,
) -> TriggerResult:
    """Create the run, or return the run an idempotency key or a debounce key stands for.

    One transaction; triggers naming the same key are serialised by an advisory lock, so
    exactly one run exists per live key even with many API replicas.
    """
    key, key_ttl = plan.idempotency_key, plan.idempotency_ttl_seconds
    if plan.lock_to_version is not None or plan.region is not None:
        await check_routing(conn, environment_id, [plan])
        served = await workers.serves_task(conn, environment_id, plan.task_identifier, plan.lock_to_version,
                                           plan.region)
    if key is None and plan.debounce is None and plan.queue_limit is None:
        # A plain trigger is one INSERT; a repeated request id finds the run it made.
        try:
            transition = await create_run(conn, plan, environment_id=environment_id, status=first_status(plan, served),
                                          parent=parent, traceparent=traceparent, request_id=request_id,
                                          batch_id=batch_id)
        except asyncpg.exceptions.UntranslatableCharacterError as exc:
            raise TriggerRejected(422, f"payload cannot be stored: {exc}") from None
        except asyncpg.exceptions.DataError as exc:
            raise TriggerRejected(422, f"run cannot be stored: {exc}") from None
        if transition is None:
            assert request_id is not None
            existing = await run_store.by_request_id(conn, environment_id, request_id)
            assert existing is not None
            return TriggerResult(existing, True, None)
        return TriggerResult(transition.run_id, False, transition)
    try:
        async with conn.transaction():
            if plan.queue is not None and plan.queue_limit is not None:
                await queue_store.set_limit(conn, environment_id, plan.queue, plan.queue_limit)
            if key is not None:
                await idempotency.lock(conn, environment_id, plan.task_identifier, "key", key)
                found = await idempotency.find(conn, environment_id, plan.task_identifier, key)
                # As the seed: a run that finished, failed or not, stands for the key until the
                # key expires or is reset (its output or error is the answer).
                if found is not None:
                    return TriggerResult(found["run_id"], True, None)
            result = None
            if plan.debounce is not None:
                result = await _debounce(conn, plan, environment_id)
            if result is None:
                transition = await create_run(conn, plan, environment_id=environment_id,
                                              status=first_status(plan, served), parent=parent,
                                              traceparent=traceparent, request_id=request_id, batch_id=batch_id)
                if transition is None:  # a repeated request id: the run it made
                    assert request_id is not None
                    existing = await run_store.by_request_id(conn, environment_id, request_id)
                    assert existing is not None
                    return TriggerResult(existing, True, None)
                result = TriggerResult(transition.run_id, False, transition)
            if key is not None:
                expires = datetime.now(UTC) + timedelta(seconds=key_ttl)
                await idempotency.bind(conn, environment_id, plan.task_identifier, key, result.run_id, expires)
            return result
    except asyncpg.exceptions.UntranslatableCharacterError as exc:
        raise TriggerRejected(422, f"payload cannot be stored: {exc}") from None
    except asyncpg.exceptions.DataError as exc:
        raise TriggerRejected(422, f"run cannot be stored: {exc}") from None


async def _debounce(conn: asyncpg.Connection, plan: RunPlan, environment_id: str) -> TriggerResult | None:
    """Push the delayed run with this debounce key later (trailing: with this trigger's data)."""
    assert plan.debounce is not None
    await idempotency.lock(conn, environment_id, plan.task_identifier, "debounce", plan.debounce.key)
    pushed = await run_store.push_debounced(
        conn,
        environment_id=environment_id,
        task_identifier=plan.task_identifier,
        debounce_key=plan.debounce.key,
        delay_seconds=plan.debounce.delay_seconds,
        trailing=plan if plan.debounce.trailing else None,
    )
    if pushed is None:
        return None
    return TriggerResult(pushed.run_id, True, pushed)


def new_run(
    plan: RunPlan,
    *,
    environment_id: str,
    status: str | None,
    parent: Parent | None,
    traceparent: str | None,
    request_id: str | None = None,
    batch_id: str | None = None,
    run_id: str | None = None,
) -> NewRun:
    """The run to insert for a plan (status None: QUEUED or PENDING_VERSION, by who serves the
    task); `run_id` None: a new id."""
    debounce = plan.debounce
    return NewRun(
        id=run_id or new_id("run"),
        environment_id=environment_id,
        task_identifier=plan.task_identifier,
        status=status,
        payload_json=plan.payload_json,
        queue=plan.queue,
        concurrency_key=plan.concurrency_key,
        tags=plan.tags,
        metadata_json=plan.metadata_json,
        max_attempts=plan.max_attempts,
        priority_ms=plan.priority_ms,
        delayed_until=plan.delayed_until,
        traceparent=traceparent,
        max_duration=plan.max_duration,
        parent_run_id=parent.id if parent else None,
        root_run_id=(parent.root_run_id or parent.id) if parent else None,
        depth=parent.depth + 1 if parent else 0,
        machine=plan.machine,
        ttl_seconds=plan.ttl_seconds,
        idempotency_key=plan.idempotency_key,
        debounce_key=debounce.key if debounce else None,
        debounce_deadline=(
            datetime.now(UTC) + timedelta(seconds=debounce.max_delay_seconds)
            if debounce and debounce.max_delay_seconds else None
        ),
        request_id=request_id,
        batch_id=batch_id,
        schedule_id=plan.schedule_id,
        payload_packet=plan.payload_packet,
        locked_version=plan.lock_to_version,
        region=plan.region,
    )


async def create_run(
    conn: asyncpg.Connection | asyncpg.Pool,
    plan: RunPlan,
    *,
    environment_id: str,
    status: str,
    parent: Parent | None,
    traceparent: str | None,
    request_id: str | None = None,
    batch_id: str | None = None,
) -> Transition | None:
    """Insert the run as planned (None: its request id made a run already)."""
    return await run_store.insert(conn, new_run(plan, environment_id=environment_id, status=status, parent=parent,
                                                traceparent=traceparent, request_id=request_id, batch_id=batch_id))
