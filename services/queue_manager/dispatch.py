"""Wiring of the queue-manager: queue signals in, dispatches out.

Signals only say "look at this environment"; the ready order and the free slots are read
from Postgres in one transaction per worker (`claims.claim`), so replicas can run
side by side and a lost signal only delays a run until the next periodic pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from slipstream_platform import telemetry
from slipstream_platform.service import Service
from slipstream_platform.settings import QueueManagerSettings
from slipstream_platform.store import claims, workers
from slipstream_proto import DispatchRun, QueueSignal, decode_event
from slipstream_proto.events import (
    QUEUE_MANAGER_CONSUMER,
    QUEUE_STREAM,
    dispatch_subject,
)

log = logging.getLogger(__name__)
_tracer = telemetry.tracer(__name__)


class Dispatcher:
    """Coalesces signals per environment and dispatches in passes."""

    def __init__(self, service: Service[QueueManagerSettings]) -> None:
        self.service = service
        self.pending: set[str] = set()
        self.full_pass = True
        self.wake = asyncio.Event()
        self.live: list[workers.LiveWorker] = []

    async def on_signal(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
            if isinstance(event, QueueSignal):
                self.pending.add(event.environment_id)
                if event.reason == "worker":
                    self.full_pass = True
                self.wake.set()
        except Exception:
            log.exception("bad message on %s", msg.subject)

    async def run(self) -> None:
        interval = self.service.settings.sweep_interval
        loop = asyncio.get_running_loop()
        next_full = 0.0
        next_ready = float("inf")  # when the earliest retry back-off ends
        while True:
            timeout = max(0.0, min(next_full, next_ready) - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=timeout)
            self.wake.clear()
            now = loop.time()
            if self.full_pass or now >= next_full or now >= next_ready:
                # Periodic pass: every environment with a live worker, whatever was signalled.
                try:
                    self.live = await workers.live(self.service.pool)
                    ready_at = await claims.next_available_at(self.service.pool)
                except Exception:
                    log.exception("reading live workers failed")
                    next_full = now + interval
                    continue
                envs = {w.environment_id for w in self.live}
                self.full_pass = False
                next_full = now + interval
                next_ready = float("inf")
                if ready_at is not None:
                    wait = (ready_at - datetime.now(UTC)).total_seconds()
                    next_ready = now + max(0.0, wait)
            else:
                envs = set(self.pending)
            self.pending.clear()
            try:
                await self.dispatch(envs)
            except Exception:
                # Postgres or NATS away: the next periodic pass tries again.
                log.exception("dispatch pass failed")
                self.full_pass = True

    async def dispatch(self, envs: set[str]) -> None:
        for worker in self.live:
            if worker.environment_id not in envs:
                continue
            more = True
            while more:
                claim = await claims.claim(self.service.pool, worker_id=worker.id,
                                           environment_id=worker.environment_id, task_ids=worker.task_ids,
                                           capacity=worker.capacity)
                if not claim.runs:
                    break
                await self.announce(worker.id, claim.runs)
                if any(run.rated for run in claim.runs):
                    # A rate window may now be full: learn when it frees (next_available_at).
                    self.full_pass = True
                    self.wake.set()
                # The walk stopped at the free slots but left some: the next claim goes on.
                more = claim.more

    async def announce(self, worker_id: str, runs: list[claims.ClaimedRun]) -> None:
        publishes = []
        for run in runs:
            parent = telemetry.extract({"traceparent": run.traceparent} if run.traceparent else None)
            with _tracer.start_as_current_span("dispatch", context=parent, attributes={"run": run.id}):
                publishes.append(
                    asyncio.create_task(
                        self.service.bus.publish(
                            dispatch_subject(worker_id),
                            DispatchRun(run_id=run.id, environment_id=run.environment_id,
                                        task_identifier=run.task_identifier, worker_id=worker_id),
                        )
                    )
                )
        for result in await asyncio.gather(*publishes, return_exceptions=True):
            if isinstance(result, BaseException):
                log.warning("dispatch publish failed (the sweeper requeues the run): %r", result)
        await self.service.bus.announce(run.transition for run in runs)


async def setup(service: Service[QueueManagerSettings]) -> None:
    """Subscribe to queue signals (one durable consumer shared by all replicas) and dispatch."""
    dispatcher = Dispatcher(service)
    sub = await service.bus.js.subscribe(
        f"{QUEUE_STREAM.subjects[0]}",
        queue=QUEUE_MANAGER_CONSUMER,
        durable=QUEUE_MANAGER_CONSUMER,
        stream=QUEUE_STREAM.name,
        cb=dispatcher.on_signal,
        manual_ack=True,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.NEW),
    )
    service.on_shutdown.append(sub.unsubscribe)
    service.spawn(dispatcher.run(), "dispatch")
