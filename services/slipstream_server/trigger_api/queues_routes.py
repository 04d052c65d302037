"""Routes of `/api/v1/queues` (state, pause, resume), `/api/v1/environment` (limits, default
region) and `/api/v1/regions`."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec
from aiohttp import web
from slipstream_core.versions import REGION
from slipstream_platform.http import HttpError, decode_body, json_response
from slipstream_platform.service import Service
from slipstream_platform.settings import TriggerApiSettings
from slipstream_platform.store import deployments, environments, workers
from slipstream_platform.store import queues as queue_store
from slipstream_platform.store import runs as run_store
from slipstream_platform.store.environments import Environment
from slipstream_platform.store.runs import Transition
from slipstream_proto import EnvironmentLimits, EnvironmentLimitsUpdate, QueueList, QueueSignal, Region, RegionList
from slipstream_proto.events import queue_signal_subject

Authenticate = Callable[[web.Request], Awaitable[Environment]]
_update_decoder = msgspec.json.Decoder(EnvironmentLimitsUpdate)


def add_routes(service: Service[TriggerApiSettings], authenticate: Authenticate) -> None:
    """Register the queue and environment-limit routes."""
    pool = service.pool

    async def wake(env: Environment) -> None:
        signal = QueueSignal(environment_id=env.id, reason="released")
        await service.bus.notify([(queue_signal_subject(env.id, signal.reason), signal)])

    async def listing(request: web.Request) -> web.Response:
        env = await authenticate(request)
        return json_response(QueueList(data=await queue_store.states(pool, env.id)))

    async def pause(request: web.Request) -> web.Response:
        env = await authenticate(request)
        await queue_store.set_paused(pool, env.id, request.match_info["name"], True)
        return json_response({"name": request.match_info["name"], "paused": True})

    async def resume(request: web.Request) -> web.Response:
        env = await authenticate(request)
        await queue_store.set_paused(pool, env.id, request.match_info["name"], False)
        await wake(env)
        return json_response({"name": request.match_info["name"], "paused": False})

    def view(row: asyncpg.Record) -> EnvironmentLimits:
        return EnvironmentLimits(id=row["id"], type=row["type"], concurrency_limit=row["concurrency_limit"],
                                 burst_factor=round(float(row["burst_factor"]), 4),
                                 default_region=row["default_region"])

    async def limits(request: web.Request) -> web.Response:
        env = await authenticate(request)
        return json_response(view(await environments.limits(pool, env.id)))

    async def set_limits(request: web.Request) -> web.Response:
        env = await authenticate(request)
        raw = await request.read()
        if not raw:
            raise HttpError(400, "a JSON body is required, e.g. {\"concurrencyLimit\": 50}")
        body = decode_body(raw, _update_decoder)
        if body.concurrency_limit is not None and not 1 <= body.concurrency_limit <= 1_000_000:
            raise HttpError(422, f"concurrencyLimit must be 1-1,000,000, got {body.concurrency_limit}")
        if body.burst_factor is not None and (not math.isfinite(body.burst_factor)
                                              or not 1 <= body.burst_factor <= 1000):
            raise HttpError(422, f"burstFactor must be 1-1,000, got {body.burst_factor}")
        if body.default_region is not None and not REGION.match(body.default_region):
            raise HttpError(422, f"defaultRegion {body.default_region[:80]!r} is not a region name: 1-64 lowercase"
                                 " letters, digits and -._ starting with a letter or digit")
        async with pool.acquire() as conn, conn.transaction():
            row = await environments.set_limits(conn, env.id, concurrency_limit=body.concurrency_limit,
                                                burst_factor=body.burst_factor, default_region=body.default_region)
            promoted: list[Transition] = []
            if body.default_region is not None:
                # Runs without a region follow the new default at once: those its workers serve
                # are queued, locks no worker can honour there any more are released.
                promoted = await run_store.promote_pending_version(conn, env.id)
                await deployments.unlock_orphaned(conn, env.id)
        await service.bus.announce(promoted, "released", [env.id])
        return json_response(view(row))

    async def regions(request: web.Request) -> web.Response:
        env = await authenticate(request)
        rows = await workers.regions(pool, env.id)
        return json_response(RegionList(data=[Region(name=r["name"], is_default=r["is_default"],
                                                     live_workers=r["live_workers"]) for r in rows]))

    router = service.app.router
    router.add_get("/api/v1/regions", regions)
    router.add_get("/api/v1/queues", listing)
    router.add_post("/api/v1/queues/{name:.+}/pause", pause)
    router.add_post("/api/v1/queues/{name:.+}/resume", resume)
    router.add_get("/api/v1/environment", limits)
    router.add_patch("/api/v1/environment", set_limits)
