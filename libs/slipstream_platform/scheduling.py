"""Firing cron schedules: exactly one run per tick, even with several scheduler replicas.

The due schedules (up to 1,000) are locked (FOR UPDATE SKIP LOCKED, so replicas take
different ones), their runs are created with one INSERT, each with the idempotency key
`slipstream:schedule:<id>:<tick>`, and their next ticks are stored with one UPDATE, all in
one transaction. Schedules with the same expression and zone share the tick arithmetic.
If the set-based statements fail, the batch is fired again one schedule at a time, so one
bad schedule cannot hold back the others. A tick of a task that neither the current deployment
nor (in DEVELOPMENT) a running worker has is skipped, as the seed's "When schedules won't
trigger" says (`slipstream_schedule_fires`, migration 0030).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from slipstream_core import cron
from slipstream_core.definitions import QueueDefinition, TaskDefinition
from slipstream_proto import TriggerOptions

from slipstream_platform import telemetry
from slipstream_platform.store import deployments, idempotency, schedules, workers
from slipstream_platform.store import queues as queue_store
from slipstream_platform.store import runs as run_store
from slipstream_platform.store.environments import Environment
from slipstream_platform.store.runs import Transition
from slipstream_platform.triggering import (
    TICK_KEY_PREFIX,
    RunPlan,
    TriggerRejected,
    new_run,
    plan_run,
    trigger_run,
)

log = logging.getLogger(__name__)
_tracer = telemetry.tracer(__name__)


def payload_of(schedule: asyncpg.Record, tick: datetime, upcoming: list[datetime]) -> dict[str, Any]:
    """What a scheduled run receives (the seed's scheduled payload, camelCase on the wire)."""
    last = schedule["last_run_at"]
    return {
        "scheduleId": schedule["id"],
        "type": schedule["type"],
        "timestamp": tick.isoformat(),
        "lastTimestamp": last.isoformat() if last else None,
        "externalId": schedule["external_id"],
        "timezone": schedule["timezone"],
        "upcoming": [t.isoformat() for t in upcoming],
    }


class _Ticks:
    """Tick arithmetic for one batch (one `now`), shared by schedules of one expression and zone."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.specs: dict[tuple[str, str], cron.CronSpec] = {}
        self.due: dict[tuple[cron.CronSpec, datetime], tuple[datetime, datetime]] = {}
        self.upcoming: dict[tuple[cron.CronSpec, datetime], list[datetime]] = {}

    def of(self, schedule: asyncpg.Record) -> tuple[datetime, datetime, list[datetime]]:
        """The tick to fire, the one after it, and the five after the fired one (for the payload)."""
        key = (schedule["cron"], schedule["timezone"])
        spec = self.specs.get(key) or self.specs.setdefault(key, cron.parse(*key))
        due_key = (spec, schedule["next_run_at"])
        if due_key not in self.due:
            self.due[due_key] = cron.latest_due(spec, schedule["next_run_at"], self.now)
        tick, following = self.due[due_key]
        if (spec, tick) not in self.upcoming:
            self.upcoming[(spec, tick)] = cron.next_ticks(spec, tick, 5)
        return tick, following, self.upcoming[(spec, tick)]


def _tick_plan(schedule: asyncpg.Record, tick: datetime, upcoming: list[datetime], now: datetime) -> RunPlan:
    plan = plan_run(schedule["task_identifier"], payload_of(schedule, tick, upcoming), TriggerOptions(),
                    environment_type=schedule["environment_type"], now=now)
    # One run per tick: a key users cannot make (the reserved prefix).
    return msgspec.structs.replace(plan, idempotency_key=f"{TICK_KEY_PREFIX}{schedule['id']}:{tick.isoformat()}",
                                   schedule_id=schedule["id"])


async def fire_due(conn: asyncpg.Connection, now: datetime, limit: int = 1000) -> list[Transition]:
    """Create the runs of every due schedule (up to `limit`); return the new runs' first statuses."""
    try:
        async with conn.transaction():
            return await _fire_batch(conn, now, limit)
    except Exception:
        log.exception("firing a batch of schedules failed; firing them one at a time")
    return await _fire_one_by_one(conn, now, limit)


async def _fire_batch(conn: asyncpg.Connection, now: datetime, limit: int) -> list[Transition]:
    ticks = _Ticks(now)
    planned: list[tuple[asyncpg.Record, RunPlan]] = []
    fired: list[tuple[str, datetime, datetime]] = []
    due = await schedules.due(conn, now, limit)
    firing = await deployments.schedules_fire(conn, sorted({(s["environment_id"], s["task_identifier"]) for s in due}))
    for schedule in due:
        tick, following, upcoming = ticks.of(schedule)
        fired.append((schedule["id"], tick, following))
        if (schedule["environment_id"], schedule["task_identifier"]) not in firing:
            log.debug("schedule %s skips its tick %s: no current worker or deployment has task %r",
                      schedule["id"], tick, schedule["task_identifier"])
            continue
        try:
            planned.append((schedule, _tick_plan(schedule, tick, upcoming, now)))
        except TriggerRejected as exc:
            log.error("schedule %s cannot fire its tick %s: %s; skipping it", schedule["id"], tick, exc.message)
    taken = await idempotency.taken(conn, [(s["environment_id"], p.task_identifier, p.idempotency_key or "")
                                           for s, p in planned])
    runs = [_traced(new_run(plan, environment_id=s["environment_id"], status=None, parent=None, traceparent=None))
            for s, plan in planned if (s["environment_id"], plan.task_identifier, plan.idempotency_key) not in taken]
    created = await run_store.insert_many(conn, runs)
    expires = now + timedelta(seconds=planned[0][1].idempotency_ttl_seconds) if planned else now
    await idempotency.bind_many(conn, [(r.environment_id, r.task_identifier, r.idempotency_key or "", r.id, expires)
                                       for r in runs])
    await schedules.advance_many(conn, fired)
    return created


def _traced(run: run_store.NewRun) -> run_store.NewRun:
    """The run with the traceparent of a span of its tick, when tracing is on: its trace begins there."""
    if not telemetry.enabled():
        return run
    attributes = {"schedule": run.schedule_id or "", "run": run.id}
    with _tracer.start_as_current_span("schedule", attributes=attributes):
        return msgspec.structs.replace(run, traceparent=telemetry.traceparent())


async def _fire_one_by_one(conn: asyncpg.Connection, now: datetime, limit: int) -> list[Transition]:
    created: list[Transition] = []
    ticks = _Ticks(now)
    async with conn.transaction():
        due = await schedules.due(conn, now, limit)
        firing = await deployments.schedules_fire(
            conn, sorted({(s["environment_id"], s["task_identifier"]) for s in due}))
        for schedule in due:
            try:
                tick, following, upcoming = ticks.of(schedule)
            except cron.CronError:
                log.exception("schedule %s has a cron it cannot fire; skipping it", schedule["id"])
                continue
            if (schedule["environment_id"], schedule["task_identifier"]) not in firing:
                await schedules.advance(conn, schedule["id"], tick, following)
                continue
            try:
                async with conn.transaction():  # a savepoint: one bad schedule does not undo the batch
                    plan = _tick_plan(schedule, tick, upcoming, now)
                    served = await workers.serves_task(conn, schedule["environment_id"], schedule["task_identifier"])
                    with _tracer.start_as_current_span(
                        "schedule", attributes={"schedule": schedule["id"], "tick": tick.isoformat()}
                    ) as span:
                        result = await trigger_run(conn, plan, environment_id=schedule["environment_id"],
                                                   served=served, parent=None, traceparent=telemetry.traceparent())
                        span.set_attribute("run", result.run_id)
                if result.transition is not None:
                    created.append(result.transition)
            except Exception:
                log.exception("schedule %s could not fire its tick %s; skipping it", schedule["id"], tick)
            await schedules.advance(conn, schedule["id"], tick, following)
    return created


async def sync_schedules(
    conn: asyncpg.Connection,
    environment: Environment,
    tasks: list[TaskDefinition],
    declared_queues: list[QueueDefinition] | None = None,
) -> None:
    """Register a worker's tasks and queues, and make the environment's declarative schedules
    match its code.

    The worker that registered last is the truth, as a deploy is: declarative schedules of
    tasks it does not declare (any more) are removed.
    """
    task_queues = {t.id: t.queue.name for t in tasks}
    await schedules.register_tasks(conn, environment.id, [(t.id, t.scheduled) for t in tasks], task_queues)
    limits = {q.name: q for q in declared_queues or []}
    for t in tasks:
        limits[t.queue.name] = t.queue
    await queue_store.declare(conn, environment.id, [limits[name] for name in sorted(limits)])
    keep: list[str] = []
    now = datetime.now(UTC)
    for task in tasks:
        declared = task.schedule
        if declared is None or not declared.cron:
            continue
        if declared.environments and environment.type not in declared.environments:
            continue
        spec = cron.parse(declared.cron, declared.timezone or "UTC")
        key = f"declarative:{task.id}"
        keep.append(key)
        await schedules.upsert(
            conn, environment_id=environment.id, task_identifier=task.id, type="DECLARATIVE",
            cron=spec.expression, timezone=spec.timezone, external_id=None, deduplication_key=key,
            next_run_at=cron.next_ticks(spec, now)[0],
        )
    await schedules.remove_declarative_except(conn, environment.id, keep)
