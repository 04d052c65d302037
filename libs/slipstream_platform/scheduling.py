"""Firing cron schedules: exactly one run per tick, even with several scheduler replicas.

Each due schedule is locked (FOR UPDATE SKIP LOCKED), its run is created with the
idempotency key `schedule:<id>:<tick>`, and its next tick is stored, all in one transaction.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from slipstream_proto import TriggerOptions

from slipstream_platform import cron
from slipstream_platform.definitions import QueueDefinition, TaskDefinition
from slipstream_platform.store import queues as queue_store
from slipstream_platform.store import schedules, workers
from slipstream_platform.store.environments import Environment
from slipstream_platform.store.runs import Transition
from slipstream_platform.triggering import TICK_KEY_PREFIX, plan_run, trigger_run

log = logging.getLogger(__name__)


def payload_of(schedule: asyncpg.Record, tick: datetime, spec: cron.CronSpec) -> dict[str, Any]:
    """What a scheduled run receives (the seed's scheduled payload, camelCase on the wire)."""
    last = schedule["last_run_at"]
    return {
        "scheduleId": schedule["id"],
        "type": schedule["type"],
        "timestamp": tick.isoformat(),
        "lastTimestamp": last.isoformat() if last else None,
        "externalId": schedule["external_id"],
        "timezone": schedule["timezone"],
        "upcoming": [t.isoformat() for t in cron.next_ticks(spec, tick, 5)],
    }


async def fire_due(conn: asyncpg.Connection, now: datetime, limit: int = 100) -> list[Transition]:
    """Create the runs of every due schedule; return the new runs' first status changes."""
    created: list[Transition] = []
    async with conn.transaction():
        for schedule in await schedules.due(conn, now, limit):
            spec = cron.parse(schedule["cron"], schedule["timezone"])
            tick, following = cron.latest_due(spec, schedule["next_run_at"], now)
            try:
                async with conn.transaction():  # a savepoint: one bad schedule does not undo the batch
                    plan = plan_run(schedule["task_identifier"], payload_of(schedule, tick, spec), TriggerOptions(),
                                    environment_type=schedule["environment_type"], now=now)
                    # One run per tick: a key users cannot make (the reserved prefix).
                    plan = msgspec.structs.replace(
                        plan, idempotency_key=f"{TICK_KEY_PREFIX}{schedule['id']}:{tick.isoformat()}")
                    served = await workers.serves_task(conn, schedule["environment_id"], schedule["task_identifier"])
                    result = await trigger_run(conn, plan, environment_id=schedule["environment_id"],
                                               served=served, parent=None, traceparent=None)
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
