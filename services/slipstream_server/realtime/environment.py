"""The feed of a whole environment: `/realtime/v1/runs` without `tags` sends every run of the
environment whenever it is triggered or changes (the dashboard's runs list follows it).

While someone watches an environment, this process subscribes to its update events; each event
names a run, which is read from Postgres and sent to the sockets that have not seen that state.
Events of one environment are coalesced: a run that changes several times while it waits to be
read is read once. A periodic read of the runs created since the last one (through
`runs_env_created`) covers lost creation events; there is no index on `updated_at` (every status
change would pay for it), so a lost event of an older run shows at its next change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from slipstream_platform.service import Service
from slipstream_platform.settings import RealtimeSettings
from slipstream_platform.tokens import Denied
from slipstream_platform.views import load_run
from slipstream_proto import RealtimeRun, Run
from slipstream_proto.events import run_updated_subject

from slipstream_server.realtime.auth import Readers, access_of, refuse
from slipstream_server.realtime.collections import MOST_RUNS, NEVER, OVERLAP, run_updated, since_of
from slipstream_server.realtime.sockets import open_socket, send

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
# What each socket remembers of the runs it was sent (the least recently sent are forgotten:
# a forgotten run's next state is sent again, never an older one than the socket had).
SEEN = 10_000


class Watched:
    """The sockets watching one environment, and the runs waiting to be read for them."""

    def __init__(self, environment_id: str) -> None:
        self.environment_id = environment_id
        self.sockets: dict[web.WebSocketResponse, OrderedDict[str, datetime]] = {}
        # What each socket is sent: runs changed since it opened (Postgres' clock), or since its `since`.
        self.opened: dict[web.WebSocketResponse, datetime] = {}
        self.events: NatsSubscription | None = None
        self.pending: set[str] = set()
        self.reading = False
        self.created_since = datetime.now(UTC)


class EnvironmentFeeds:
    """Every environment watched through this process."""

    def __init__(self, service: Service[RealtimeSettings], readers: Readers) -> None:
        self.service = service
        self.credentials = readers.credentials
        self.links = readers.links
        self.watched: dict[str, Watched] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_update(self, msg: Msg) -> None:
        event = run_updated(msg)
        if event is not None:
            watched = self.watched.get(event.environment_id)
            if watched is not None:
                self.mark(watched, [event.run_id])

    def mark(self, watched: Watched, run_ids: list[str]) -> None:
        """Read these runs for the environment's sockets (coalesced: one reader at a time)."""
        watched.pending.update(run_ids)
        if watched.reading:
            return
        watched.reading = True
        task = asyncio.create_task(self._read(watched))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, watched: Watched) -> None:
        try:
            while watched.pending and watched.sockets:
                run_id = watched.pending.pop()
                run = await load_run(self.service.pool, watched.environment_id, run_id, links=self.links)
                if run is not None:
                    await self.send(watched, run)
        except Exception:
            log.exception("reading the runs of environment %s failed", watched.environment_id)
        finally:
            watched.reading = False
            if watched.pending and watched.sockets:
                self.mark(watched, [])

    async def send(self, watched: Watched, run: Run[Any], only: web.WebSocketResponse | None = None) -> None:
        """Send the run to the sockets (or `only` one) that have not seen this state or a newer one."""
        data: str | None = None
        for ws, seen in list(watched.sockets.items()):
            if (only is not None and ws is not only) or seen.get(run.id, NEVER) >= run.updated_at:
                continue
            if run.updated_at < watched.opened.get(ws, NEVER):
                continue  # as it was before the socket opened (the poll's overlap reads such runs again)
            seen[run.id] = run.updated_at
            seen.move_to_end(run.id)
            if len(seen) > SEEN:
                seen.popitem(last=False)
            if data is None:
                data = _encoder.encode(RealtimeRun(run=run)).decode()
            await send(ws, data, self.service.settings.ws_send_timeout)

    async def created_since(self, environment_id: str, since: datetime) -> list[str]:
        """The runs created since `since` (less the overlap), oldest first (the newest 1,000)."""
        rows = await self.service.pool.fetch(
            "SELECT id FROM runs WHERE environment_id = $1 AND created_at >= $2"
            f" ORDER BY created_at DESC, id DESC LIMIT {MOST_RUNS}", environment_id, since - OVERLAP)
        return [r["id"] for r in reversed(rows)]

    async def poll(self) -> None:
        """Catch runs whose creation events were lost."""
        while True:
            await asyncio.sleep(self.service.settings.poll_interval)
            for watched in list(self.watched.values()):
                try:
                    started = datetime.now(UTC)
                    self.mark(watched, await self.created_since(watched.environment_id, watched.created_since))
                    watched.created_since = started
                except Exception:
                    log.exception("polling environment %s failed", watched.environment_id)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = open_socket(self.service.settings)
        await ws.prepare(request)
        try:
            access = await access_of(self.credentials, request)
            s = access.scopes
            if s is not None and not {"read:runs", "read:all", "write:all"} & s:
                raise Denied(403, "this public access token's scopes do not include read:runs"
                                  " (every run of the environment)")
            since = since_of(request)
        except Denied as exc:
            return await refuse(ws, exc.status, exc.message)
        except ValueError as exc:
            return await refuse(ws, 400, str(exc))
        env = access.environment
        # Register first, then read: a change between the two is not missed.
        try:
            opened = since - OVERLAP if since is not None else await self.service.pool.fetchval(
                "SELECT clock_timestamp()")
        except Exception:
            log.exception("subscription to environment %s failed", env.id)
            return await refuse(ws, 500, "internal error in realtime; subscribe again")
        watched = self.watched.setdefault(env.id, Watched(env.id))
        watched.sockets[ws] = OrderedDict()
        watched.opened[ws] = opened
        try:
            if watched.events is None:
                watched.events = await self.service.nc.subscribe(run_updated_subject(env.id, "*"),
                                                                 cb=self.on_update)
            if since is not None:  # a client coming back: the runs triggered while it was away
                for run_id in await self.created_since(env.id, since):
                    run = await load_run(self.service.pool, env.id, run_id, links=self.links)
                    if run is not None:
                        await self.send(watched, run, only=ws)
            async for _ in ws:
                pass  # clients send nothing; this waits for the close
            return ws
        except Exception:
            log.exception("subscription to environment %s failed", env.id)
            if not ws.closed:
                return await refuse(ws, 500, "internal error in realtime; subscribe again")
            return ws
        finally:
            watched.sockets.pop(ws, None)
            watched.opened.pop(ws, None)
            if not watched.sockets and self.watched.get(env.id) is watched:
                del self.watched[env.id]
                if watched.events is not None:
                    with contextlib.suppress(Exception):
                        await watched.events.unsubscribe()
