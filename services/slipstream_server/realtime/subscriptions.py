"""Websocket subscriptions to runs, fed by the update events of the runs watched here.

Each watched run's update subject is subscribed to while someone watches it, so this
process receives the events of those runs only (not every run's). An update event only
says "run X changed": the current run is read from Postgres and sent to every subscriber
of X. A periodic poll of the subscribed runs covers any lost event.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import WSCloseCode, web
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from slipstream_platform.service import Service
from slipstream_platform.settings import RealtimeSettings
from slipstream_platform.store import runs as run_store
from slipstream_platform.tokens import Credentials, Denied
from slipstream_platform.views import PacketLinks, load_run
from slipstream_proto import RealtimeRun, Run
from slipstream_proto.events import run_updated_subject

from slipstream_server.realtime import collections, environment
from slipstream_server.realtime.auth import Readers, access_of, refuse
from slipstream_server.realtime.sockets import open_socket, send

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


class Subscription:
    """The sockets watching one run, and what they were last sent."""

    def __init__(self, environment_id: str) -> None:
        self.environment_id = environment_id
        self.events: NatsSubscription | None = None
        # Each socket with the `updatedAt` of the last state it was sent: never older again.
        self.sockets: dict[web.WebSocketResponse, datetime | None] = {}
        # Sockets that asked to stay open once the run finishes (`?stopOnCompletion=false`).
        self.keep_open: set[web.WebSocketResponse] = set()
        self.last_sent: datetime | None = None
        self.refreshing = False
        self.dirty = False


class Hub:
    """All subscriptions of this process."""

    def __init__(self, service: Service[RealtimeSettings], readers: Readers) -> None:
        self.service = service
        self.credentials = readers.credentials
        self.links = readers.links
        self.runs: dict[str, Subscription] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_update(self, msg: Msg) -> None:
        event = collections.run_updated(msg)
        if event is not None and event.run_id in self.runs:
            self.refresh(event.run_id)

    def refresh(self, run_id: str) -> None:
        """Send the run's current state to its subscribers (coalesced)."""
        sub = self.runs.get(run_id)
        if sub is None:
            return
        if sub.refreshing:
            sub.dirty = True
            return
        sub.refreshing = True
        task = asyncio.create_task(self._refresh(run_id, sub))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, run_id: str, sub: Subscription) -> None:
        try:
            while True:
                sub.dirty = False
                run = await load_run(self.service.pool, sub.environment_id, run_id, links=self.links)
                if run is not None and run.updated_at != sub.last_sent:
                    sub.last_sent = run.updated_at
                    await self.send(sub, run)
                    if run.is_completed:
                        for ws in [ws for ws in sub.sockets if ws not in sub.keep_open]:
                            await ws.close(code=WSCloseCode.OK, message=b"run finished")
                        if not sub.keep_open:
                            self.forget(run_id, sub)
                            return
                if not sub.dirty:
                    return
        except Exception:
            log.exception("refreshing run %s failed", run_id)
        finally:
            sub.refreshing = False

    async def send(self, sub: Subscription, run: Run[Any], only: web.WebSocketResponse | None = None) -> None:
        """Send the run to the subscription's sockets that have not seen this state or a newer one."""
        data = _encoder.encode(RealtimeRun(run=run)).decode()
        for ws, seen in list(sub.sockets.items()):
            if (only is not None and ws is not only) or (seen is not None and seen >= run.updated_at):
                continue
            sub.sockets[ws] = run.updated_at
            await send(ws, data, self.service.settings.ws_send_timeout)

    async def poll(self) -> None:
        """Catch changes whose events were lost."""
        while True:
            await asyncio.sleep(self.service.settings.poll_interval)
            if not self.runs:
                continue
            try:
                current = await run_store.statuses(self.service.pool, list(self.runs))
            except Exception:
                log.exception("poll failed")
                continue
            for run_id, updated_at in current.items():
                sub = self.runs.get(run_id)
                if sub is not None and sub.last_sent != updated_at:
                    self.refresh(run_id)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = open_socket(self.service.settings)
        await ws.prepare(request)
        run_id = request.match_info["run_id"]


        try:
            access = await access_of(self.credentials, request)
        except Denied as exc:
            return await refuse(ws, exc.status, exc.message)
        env = access.environment
        # Register first, then read: an update between the two is not missed.
        sub = self.runs.setdefault(run_id, Subscription(env.id))
        if sub.environment_id != env.id:
            return await refuse(ws, 404, "Run not found")
        try:
            since = collections.since_of(request)
        except ValueError as exc:
            return await refuse(ws, 400, str(exc))
        # A client that comes back after a drop says what it saw last: it is sent only newer states.
        sub.sockets[ws] = since
        keep_open = request.query.get("stopOnCompletion", "true").lower() == "false"
        if keep_open:
            sub.keep_open.add(ws)
        try:
            if sub.events is None:
                sub.events = await self.service.nc.subscribe(run_updated_subject(env.id, run_id),
                                                             cb=self.on_update)
            run = await load_run(self.service.pool, env.id, run_id, links=self.links)
            # A token learns nothing of runs outside its scopes, not even whether they exist.
            fields = {} if run is None else {"task": run.task_identifier, "tags": run.tags, "batch_id": run.batch_id}
            if not access.can_read(run_id=run_id, **fields):  # type: ignore[arg-type]
                return await refuse(ws, 403, f"this public access token's scopes do not include read:runs:{run_id}")
            if run is None:
                return await refuse(ws, 404, "Run not found")
            await self.send(sub, run, only=ws)
            if run.is_completed and not keep_open:  # (a client that had the final state gets just the close)
                await ws.close(code=WSCloseCode.OK, message=b"run finished")
                return ws
            async for _ in ws:
                pass  # clients send nothing; this waits for the close
            return ws
        except Exception:
            log.exception("subscription to %s failed", run_id)
            if not ws.closed:
                return await refuse(ws, 500, "internal error in realtime; subscribe again")
            return ws
        finally:
            sub.sockets.pop(ws, None)
            sub.keep_open.discard(ws)
            if not sub.sockets:
                self.forget(run_id, sub)

    def forget(self, run_id: str, sub: Subscription) -> None:
        """Nobody here watches the run any more: stop receiving its events."""
        if self.runs.get(run_id) is sub:
            del self.runs[run_id]
        if sub.events is not None:
            events, sub.events = sub.events, None
            task = asyncio.create_task(events.unsubscribe())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def setup(service: Service[RealtimeSettings]) -> None:
    """Route the websockets (one run here; sets of runs in `collections`), poll as a safety net."""
    credentials = Credentials(service.pool)  # one cache of keys for both kinds of subscription
    readers = Readers(credentials, PacketLinks(service.settings.api_url, credentials))
    hub = Hub(service, readers)
    service.app.router.add_get("/realtime/v1/runs/{run_id}", hub.handle)
    service.spawn(hub.poll(), "poll")
    feeds = environment.EnvironmentFeeds(service, readers)
    await collections.setup(service, readers, feeds.handle)
    service.spawn(feeds.poll(), "poll-environments")
