"""The JetStream bus: connecting, creating the streams, and publishing events.

Postgres holds the truth; every message here can be rebuilt from it. A publish that fails
after the Postgres commit is logged and left to the sweepers, which find the run whose next
step was not taken (see docs/adr/0002-state-derived-outbox.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, BadRequestError, NotFoundError
from slipstream_proto import STREAMS, QueueSignal, RunUpdated, StreamSpec, encode_event
from slipstream_proto.events import (
    RETIRED_STREAMS,
    SIGNAL_RUNS,
    Event,
    QueueReason,
    queue_signal_subject,
    run_updated_subject,
)

from slipstream_platform import metrics, packets, telemetry
from slipstream_platform.store.runs import Transition

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long an acknowledged publish keeps trying (a stream's leader election, a reconnect).
PUBLISH_PATIENCE = 15.0


async def connect(url: str, name: str) -> NATS:
    """Connect to NATS (`url` may list several servers of a cluster, comma-separated),
    reconnecting forever, to any of them, if the server goes away."""
    return await nats.connect(
        [server.strip() for server in url.split(",") if server.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        connect_timeout=5,
        allow_reconnect=True,
    )


def _stream_config(spec: StreamSpec, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        retention=RetentionPolicy(spec.retention),
        storage=StorageType(spec.storage),
        max_age=spec.max_age_seconds,
        duplicate_window=spec.duplicate_window_seconds,
        num_replicas=replicas,
    )


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the platform's streams and its payload store with `replicas` copies each
    (SLIPSTREAM_NATS_REPLICAS: 3 on a cluster of three), or bring their config up to date;
    delete retired streams."""
    await packets.ensure_bucket(js, replicas)
    for name in RETIRED_STREAMS:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)
    for spec in STREAMS:
        config = _stream_config(spec, replicas)
        try:
            await js.add_stream(config)
        except BadRequestError:
            await _update_stream(js, spec, config)
        except APIError as exc:
            if exc.err_code != 10058:  # stream name already in use with another config
                raise
            await _update_stream(js, spec, config)


async def patiently(step: Callable[[], Awaitable[T]], what: str, patience: float = 120.0) -> T:
    """Run a JetStream step, again while JetStream cannot answer (a cluster electing a leader, a
    node restarting), for up to `patience` seconds: a service starting then waits, not dies."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = 0.2
    while True:
        try:
            return await step()
        except (TimeoutError, NoRespondersError, NatsTimeoutError, APIError) as exc:
            if (isinstance(exc, APIError) and exc.code not in (503, None)) or loop.time() > deadline:
                raise
            log.warning("%s: JetStream is not answering yet (%r); trying again", what, exc)
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)


async def ensure_streams_patiently(js: JetStreamContext, replicas: int = 1) -> None:
    """`ensure_streams`, through a JetStream that is not answering yet (see `patiently`)."""
    await patiently(lambda: ensure_streams(js, replicas), "creating the streams")


async def _update_stream(js: JetStreamContext, spec: StreamSpec, config: StreamConfig) -> None:
    try:
        await js.update_stream(config)
    except BadRequestError:
        if spec.storage != "memory":
            raise
        # A stream's storage cannot change; a memory stream holds only hints: make it anew.
        log.warning("recreating stream %s with %s storage", spec.name, spec.storage)
        await js.delete_stream(spec.name)
        await js.add_stream(config)


class Bus:
    """Publishes events with retries; trace context goes in the headers."""

    def __init__(self, nc: NATS, *, status_delay: float = 0.0) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        # Status changes announced alone wait this long to go out together (see `announce`).
        self.status_delay = status_delay
        # Named in the queue signals `announce` sends (`QueueSignal.sender`): a supervisor's worker id.
        self.sender = ""
        self._held: list[tuple[str, Event, dict[str, str] | None]] = []
        self._release: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Task[None]] = set()

    async def publish(self, subject: str, event: Event, *, msg_id: str | None = None) -> None:
        """Publish and wait for the stream's ack, retrying through leader elections."""
        headers = telemetry.inject_headers()
        if msg_id:
            headers["Nats-Msg-Id"] = msg_id
        data = encode_event(event)
        # A leader election of a replicated stream takes a few seconds: keep trying for PUBLISH_PATIENCE.
        await patiently(lambda: self.js.publish(subject, data, headers=headers or None, timeout=2),
                        f"publishing to {subject}", PUBLISH_PATIENCE)

    async def notify(self, items: list[tuple[str, Event]]) -> None:
        """Publish events without waiting for the stream's ack; log (don't raise) failures.

        For messages that only announce a committed change (status updates, queue signals):
        the sweepers and pollers repair whatever a lost one left undone, so the hot path does
        not pay a round trip per message.
        """
        headers = telemetry.inject_headers() or None
        await self._send([(subject, event, headers) for subject, event in items])

    async def _send(self, items: list[tuple[str, Event, dict[str, str] | None]]) -> None:
        for subject, event, headers in items:
            try:
                await self.nc.publish(subject, encode_event(event), headers=headers)
            except Exception as exc:
                metrics.publish_failures.inc()
                log.warning("publish to %s failed (the sweeper will repair): %r", subject, exc)

    async def announce(
        self, transitions: Iterable[Transition], reason: QueueReason | None = None, environments: Iterable[str] = ()
    ) -> None:
        """Publish committed status changes as `RunUpdated`; with a `reason`, also wake the
        supervisors (and the queue-manager) of every environment where a run became QUEUED, and
        of `environments` (where slots were freed or workers came). A signal names the runs
        that became QUEUED when a few did and nothing else woke it (`QueueSignal.runs`).

        With a `status_delay`, status changes that wake nobody are held that long and go out
        with the others held meanwhile, in order: one write to NATS (and one wake-up of
        nats-server) for several runs, where a supervisor starting and ending runs one at a
        time would write twice a run. Realtime reads the run from Postgres on each change, so a
        change is late by the delay at most, never wrong; a wake-up goes out at once, after
        whatever was held."""
        items: list[tuple[str, Event]] = []
        freed = set(environments)
        wake = set(freed)
        queued: dict[str, list[str]] = {}
        for t in transitions:
            items.append((run_updated_subject(t.environment_id, t.run_id),
                          RunUpdated(run_id=t.run_id, environment_id=t.environment_id, status=t.status,
                                     updated_at=t.updated_at)))
            if t.status == "QUEUED":
                wake.add(t.environment_id)
                queued.setdefault(t.environment_id, []).append(t.run_id)
        if reason is not None:
            for env in sorted(wake):
                # Named only when they are all that woke it: a signal that also frees capacity names none.
                runs = queued.get(env, [])
                named = tuple(runs) if env not in freed and len(runs) <= SIGNAL_RUNS else ()
                items.append((queue_signal_subject(env, reason),
                              QueueSignal(environment_id=env, reason=reason, runs=named, sender=self.sender)))
        if not items:
            return
        headers = telemetry.inject_headers() or None
        stamped = [(subject, event, headers) for subject, event in items]
        if self.status_delay <= 0 or (reason is not None and wake):
            await self._send(self._take_held() + stamped)
            return
        self._held += stamped
        if self._release is None:
            self._release = asyncio.get_running_loop().call_later(self.status_delay, self._release_held)

    def _take_held(self) -> list[tuple[str, Event, dict[str, str] | None]]:
        held, self._held = self._held, []
        if self._release is not None:
            self._release.cancel()
            self._release = None
        return held

    def _release_held(self) -> None:
        self._release = None
        task = asyncio.ensure_future(self._send(self._take_held()))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def settle(self) -> None:
        """Publish what is held now (before the connection closes)."""
        await self._send(self._take_held())
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
