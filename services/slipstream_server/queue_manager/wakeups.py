"""Wiring of the queue-manager: wake the supervisors when queued runs become ready by time.

Supervisors take their own runs when a signal says some may be ready (ADR 0009). A run that
waits for time sends no signal when its time comes: a retry's back-off ends, or a rate
limit's window lets another start in. The queue-manager reads when the earliest of those
moments is (`claims.next_available_at`), again after every burst of the signals that may
leave a run waiting for time (`TIMED_REASONS`: a retry or a rate-limited start is announced
with one) and every sweep interval, and at that moment signals every environment with a live
worker. Replicas share the signals through one NATS queue group; a signal sent twice costs a
take that finds nothing. Triggers' signals never reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.msg import Msg
from slipstream_platform import metrics
from slipstream_platform.service import Service
from slipstream_platform.settings import QueueManagerSettings
from slipstream_platform.store import claims, workers
from slipstream_proto import QueueSignal, decode_event
from slipstream_proto.events import QUEUE_MANAGER_GROUP, TIMED_REASONS, queue_signal_subject, queue_signals_for

log = logging.getLogger(__name__)

# Signals closer together than this are read as one burst: one read of the next ready time.
_BURST = 0.05


class Waker:
    """Knows when the next queued run becomes ready by time, and signals then."""

    def __init__(self, service: Service[QueueManagerSettings]) -> None:
        self.service = service
        self.changed = asyncio.Event()

    async def on_signal(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except Exception:
            log.exception("bad message on %s", msg.subject)
            return
        if isinstance(event, QueueSignal):
            self.changed.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.service.settings.sweep_interval
        next_read = 0.0  # when to read the next ready time again, whatever happens
        wake_at = float("inf")  # when the earliest run waiting for time becomes ready
        while True:
            timeout = max(0.0, min(next_read, wake_at) - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=timeout)
            if self.changed.is_set():
                await asyncio.sleep(_BURST)  # let the burst finish
                self.changed.clear()
            now = loop.time()
            if now >= wake_at:
                wake_at = float("inf")
                await self.signal_all()
            try:
                wait = await claims.seconds_until_available(self.service.pool)
            except Exception:
                log.exception("reading when runs become ready failed")
                next_read = loop.time() + interval
                continue
            next_read = loop.time() + interval
            if wait is not None:
                wake_at = loop.time() + max(0.0, wait)

    async def signal_all(self) -> None:
        """Wake the supervisors of every environment with a live worker."""
        try:
            live = await workers.live(self.service.pool)
        except Exception:
            log.exception("reading live workers failed")
            return
        envs = sorted({w.environment_id for w in live})
        await self.service.bus.notify([(queue_signal_subject(env, "ready"),
                                        QueueSignal(environment_id=env, reason="ready")) for env in envs])


async def setup(service: Service[QueueManagerSettings]) -> None:
    """Hear the timed signals (one queue group shared by all replicas) and wake on time."""
    waker = Waker(service)
    metrics.serve_snapshot()  # runs by status and queues, read from Postgres at each scrape
    service.before_scrape.append(lambda: metrics.refresh_snapshot(service.pool))
    for reason in TIMED_REASONS:
        sub = await service.bus.nc.subscribe(queue_signals_for(reason), queue=QUEUE_MANAGER_GROUP, cb=waker.on_signal)
        service.on_shutdown.append(sub.unsubscribe)
    service.spawn(waker.run(), "wakeups")
