"""The scheduler's three loops: due delayed runs (and waitpoints, ttl), cron schedules, and the sweeper.

All run guarded, idempotent statements, so several replicas may run at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime

from slipstream_platform import scheduling
from slipstream_platform.service import Service
from slipstream_platform.settings import SchedulerSettings
from slipstream_platform.store import deployments, schedules, waitpoints, workers
from slipstream_platform.store import queues as queue_store
from slipstream_platform.store import runs as run_store
from slipstream_platform.store.runs import Transition

log = logging.getLogger(__name__)


async def delayed_loop(service: Service[SchedulerSettings]) -> None:
    """Move DELAYED runs whose time has come to QUEUED, expire runs past their ttl, and resume
    WAITING runs whose waitpoint completed."""
    while True:
        try:
            changed = await run_store.promote_due_delayed(service.pool)
            changed += await run_store.expire_due(service.pool)
            changed += await waitpoints.resume_due(service.pool)
        except Exception:
            log.exception("promoting delayed runs or expiring runs failed; trying again")
            changed = []
        if changed:
            await service.bus.announce(changed, "delay")
            continue
        await asyncio.sleep(await _until_due(run_store.next_due(service.pool), service.settings.tick_interval))


# Batches of due schedules fired at once (each takes its own, SKIP LOCKED): the Python work of
# one overlaps the Postgres work of the other.
FIRERS = 2


async def _fire(service: Service[SchedulerSettings], now: datetime) -> list[Transition]:
    async with service.pool.acquire() as conn:
        return await scheduling.fire_due(conn, now)


async def schedule_loop(service: Service[SchedulerSettings]) -> None:
    """Fire due cron schedules (exactly one run per tick, across replicas)."""
    tick_interval = service.settings.tick_interval
    while True:
        now = datetime.now(UTC)
        try:
            batches = await asyncio.gather(*(_fire(service, now) for _ in range(FIRERS)))
            created = [t for batch in batches for t in batch]
        except Exception:
            log.exception("firing schedules failed; trying again")
            created = []
        if created:
            await service.bus.announce(created, "triggered")
            continue
        await asyncio.sleep(await _until_due(schedules.next_due(service.pool), tick_interval))


async def _until_due(next_due: Awaitable[datetime | None], most: float) -> float:
    """Seconds until `next_due`, at most `most` (new work may come sooner)."""
    try:
        due = await next_due
    except Exception:
        return most
    if due is None:
        return most
    return min(most, max(0.0, (due - datetime.now(UTC)).total_seconds()))


async def sweep_once(service: Service[SchedulerSettings]) -> list[Transition]:
    """One pass of the sweeper; returns what it changed."""
    settings = service.settings
    changed: list[Transition] = []
    async with service.pool.acquire() as conn:
        silent = await workers.stop_silent(conn, settings.worker_timeout)
        if silent:
            log.warning("workers stopped sending heartbeats: %s", ", ".join(silent))
        async with conn.transaction():
            changed += await run_store.recover_from_stopped_workers(conn)
        # After the recovery, which puts the stopped workers' runs back in the queue with their lock.
        released = await deployments.unlock_orphaned(conn)
        changed += await run_store.requeue_dequeued(conn, older_than_seconds=settings.dequeued_timeout)
        changed += await run_store.promote_pending_version(conn)
        await queue_store.prune_starts(conn)
    if changed:
        log.info("sweeper moved %d run(s)", len(changed))
    if changed or released:
        await service.bus.announce(changed, "requeued", released)
    return changed


async def sweep_loop(service: Service[SchedulerSettings]) -> None:
    """Repair what crashes left behind, every `sweep_interval` seconds."""
    while True:
        try:
            await sweep_once(service)
        except Exception:
            log.exception("sweep failed; trying again next interval")
        await asyncio.sleep(service.settings.sweep_interval)


async def setup(service: Service[SchedulerSettings]) -> None:
    """Start the loops."""
    service.spawn(delayed_loop(service), "delayed")
    service.spawn(sweep_loop(service), "sweep")
    service.spawn(schedule_loop(service), "schedules")
