"""Websocket subscriptions to sets of runs: every run with a tag (`/realtime/v1/runs?tags=`),
or every run of a batch (`/realtime/v1/batches/{batchId}`); `/realtime/v1/runs` without `tags`
is the whole environment's feed (`realtime.environment`).

While someone watches a set of an environment, this process subscribes to the update events
of the whole environment; an event marks the environment's sets to be read again. A read asks
Postgres for the set's runs updated since the last read (less an overlap, for commits that
land out of order) through the set's index (`runs_by_tag`, `runs_by_batch`), and sends each run
whose state a socket has not seen yet. A periodic read covers lost events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
from aiohttp import web
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from slipstream_platform.service import Service
from slipstream_platform.settings import RealtimeSettings
from slipstream_platform.tokens import Denied
from slipstream_platform.views import load_run
from slipstream_proto import RealtimeRun, RunUpdated, decode_event
from slipstream_proto.events import run_updated_subject

from slipstream_server.realtime.auth import Readers, access_of, refuse
from slipstream_server.realtime.sockets import open_socket, send

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()

# How far back each read looks past the newest change it saw: a change whose transaction began
# earlier but committed later has an older `updatedAt`.
OVERLAP = timedelta(seconds=5)
# The most runs one read sends (the first read of a set sends its newest).
MOST_RUNS = 1000
NEVER = datetime.min.replace(tzinfo=UTC)


def since_of(request: web.Request) -> datetime | None:
    """`?since=<updatedAt>`: the newest state the client has (ValueError if it is not a time)."""
    text = request.query.get("since")
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since must be an ISO 8601 time (a run's updatedAt), not {text[:40]!r}") from None
    if at.tzinfo is None:
        raise ValueError("since needs a time zone (a run's updatedAt has one)")
    return at


def run_updated(msg: Msg) -> RunUpdated | None:
    """The run update event a message carries (None, logged, for a message that is not one)."""
    try:
        event = decode_event(msg.data)
    except msgspec.DecodeError:
        log.warning("bad message on %s", msg.subject)
        return None
    return event if isinstance(event, RunUpdated) else None


class RunSet:
    """The sockets watching one set of runs, and what each was last sent of every run."""

    def __init__(self, environment_id: str, kind: str, value: str) -> None:
        self.environment_id = environment_id
        self.kind = kind  # "tag" or "batch"
        self.value = value
        self.sockets: dict[web.WebSocketResponse, dict[str, datetime]] = {}
        self.since: datetime | None = None
        self.refreshing = False
        self.dirty = False

    def query(self) -> tuple[str, list[object]]:
        where = "tags && ARRAY[$2]::text[] AND tags <> '{}'" if self.kind == "tag" else "batch_id = $2"
        since = "" if self.since is None else " AND updated_at >= $3"
        sql = (f"SELECT id, updated_at FROM runs WHERE environment_id = $1 AND {where}{since}"
               f" ORDER BY updated_at DESC, id DESC LIMIT {MOST_RUNS}")
        args: list[object] = [self.environment_id, self.value]
        if self.since is not None:
            args.append(self.since - OVERLAP)
        return sql, args


class RunSets:
    """All the sets of runs this process serves."""

    def __init__(self, service: Service[RealtimeSettings], readers: Readers) -> None:
        self.service = service
        self.credentials = readers.credentials
        self.links = readers.links
        self.sets: dict[tuple[str, str, str], RunSet] = {}
        self.events: dict[str, NatsSubscription] = {}  # per environment with a watched set
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_update(self, msg: Msg) -> None:
        event = run_updated(msg)
        if event is not None:
            for run_set in list(self.sets.values()):
                if run_set.environment_id == event.environment_id:
                    self.refresh(run_set)

    def refresh(self, run_set: RunSet) -> None:
        """Read the set again and send what changed (coalesced)."""
        if run_set.refreshing:
            run_set.dirty = True
            return
        run_set.refreshing = True
        task = asyncio.create_task(self._refresh(run_set))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, run_set: RunSet) -> None:
        try:
            while True:
                run_set.dirty = False
                await self._read(run_set)
                if not run_set.dirty:
                    return
        except Exception:
            log.exception("refreshing the runs of %s %s failed", run_set.kind, run_set.value)
        finally:
            run_set.refreshing = False

    async def _read(self, run_set: RunSet, only: web.WebSocketResponse | None = None,
                    since: datetime | None = None) -> None:
        """Send what changed since the set's last read; with `only`, the first read of one socket
        (every run of the set, or the ones changed since `since`, a client coming back)."""
        if only is None:
            sql, args = run_set.query()
        else:
            first = RunSet(run_set.environment_id, run_set.kind, run_set.value)
            first.since = since
            sql, args = first.query()
        rows: list[asyncpg.Record] = list(await self.service.pool.fetch(sql, *args))
        if only is None and rows:
            newest = max(r["updated_at"] for r in rows)
            run_set.since = newest if run_set.since is None else max(run_set.since, newest)
        for row in reversed(rows):  # oldest change first
            targets = [ws for ws, seen in run_set.sockets.items()
                       if (only is None or ws is only) and seen.get(row["id"], NEVER) < row["updated_at"]]
            if not targets:
                continue
            run = await load_run(self.service.pool, run_set.environment_id, row["id"], links=self.links)
            if run is None:
                continue
            data = _encoder.encode(RealtimeRun(run=run)).decode()
            for ws in targets:
                seen = run_set.sockets.get(ws)
                if seen is None or seen.get(run.id, NEVER) >= run.updated_at:
                    continue
                seen[run.id] = run.updated_at
                await send(ws, data, self.service.settings.ws_send_timeout)

    async def poll(self) -> None:
        """Catch changes whose events were lost."""
        while True:
            await asyncio.sleep(self.service.settings.poll_interval)
            for run_set in list(self.sets.values()):
                self.refresh(run_set)

    async def handle(self, request: web.Request, kind: str, value: str) -> web.StreamResponse:
        ws = open_socket(self.service.settings)
        await ws.prepare(request)


        try:
            access = await access_of(self.credentials, request)
            env = access.environment
            if not value or len(value) > 256 or "\x00" in value:
                raise Denied(400, f"a {kind} is 1-256 characters")
            access.require_kind("tags" if kind == "tag" else kind, value)
        except Denied as exc:
            return await refuse(ws, exc.status, exc.message)
        if kind == "batch" and not await self.service.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM batches WHERE id = $1 AND environment_id = $2)", value, env.id):
            return await refuse(ws, 404, "Batch not found")
        try:
            since = since_of(request)
        except ValueError as exc:
            return await refuse(ws, 400, str(exc))
        # Register first, then read: a change between the two is not missed.
        run_set = self.sets.setdefault((env.id, kind, value), RunSet(env.id, kind, value))
        run_set.sockets[ws] = {}
        try:
            if env.id not in self.events:
                self.events[env.id] = await self.service.nc.subscribe(run_updated_subject(env.id, "*"),
                                                                      cb=self.on_update)
            await self._read(run_set, only=ws, since=since)
            async for _ in ws:
                pass  # clients send nothing; this waits for the close
            return ws
        except Exception:
            log.exception("subscription to %s %s failed", kind, value)
            if not ws.closed:
                return await refuse(ws, 500, "internal error in realtime; subscribe again")
            return ws
        finally:
            run_set.sockets.pop(ws, None)
            if not run_set.sockets:
                self.sets.pop((env.id, kind, value), None)
            if not any(s.environment_id == env.id for s in self.sets.values()):
                events = self.events.pop(env.id, None)
                if events is not None:
                    with contextlib.suppress(Exception):
                        await events.unsubscribe()


async def setup(service: Service[RealtimeSettings], readers: Readers,
                environment_feed: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
    """Route the set subscriptions (`/realtime/v1/runs` without `tags` to `environment_feed`),
    poll as a safety net."""
    sets = RunSets(service, readers)

    async def by_tag(request: web.Request) -> web.StreamResponse:
        if "tags" not in request.query:  # every run of the environment
            return await environment_feed(request)
        return await sets.handle(request, "tag", request.query["tags"])

    async def by_batch(request: web.Request) -> web.StreamResponse:
        return await sets.handle(request, "batch", request.match_info["batch_id"])

    service.app.router.add_get("/realtime/v1/runs", by_tag)
    service.app.router.add_get("/realtime/v1/batches/{batch_id}", by_batch)
    service.spawn(sets.poll(), "poll-sets")
