"""Routes of `/api/v1/queues` (state, pause, resume) and `/api/v1/environment` (limits)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec
from aiohttp import web
from slipstream_platform.http import HttpError, decode_body, json_response
from slipstream_platform.service import Service
from slipstream_platform.settings import TriggerApiSettings
from slipstream_platform.store import environments
from slipstream_platform.store import queues as queue_store
from slipstream_platform.store.environments import Environment
from slipstream_proto import EnvironmentLimits, EnvironmentLimitsUpdate, QueueList, QueueSignal
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
                                 burst_factor=round(float(row["burst_factor"]), 4))

    async def limits(request: web.Request) -> web.Response:
        env = await authenticate(request)
        return json_response(view(await environments.limits(pool, env.id)))

    async def set_limits(request: web.Request) -> web.Response:
        env = await authenticate(request)
        body = decode_body(await request.read() or b"{}", _update_decoder)
        if body.concurrency_limit is not None and body.concurrency_limit < 1:
            raise HttpError(422, f"concurrencyLimit must be at least 1, got {body.concurrency_limit}")
        if body.burst_factor is not None and (not math.isfinite(body.burst_factor) or body.burst_factor < 1):
            raise HttpError(422, f"burstFactor must be 1 or more, got {body.burst_factor}")
        row = await environments.set_limits(pool, env.id, concurrency_limit=body.concurrency_limit,
                                            burst_factor=body.burst_factor)
        await wake(env)
        return json_response(view(row))

    router = service.app.router
    router.add_get("/api/v1/queues", listing)
    router.add_post("/api/v1/queues/{name:.+}/pause", pause)
    router.add_post("/api/v1/queues/{name:.+}/resume", resume)
    router.add_get("/api/v1/environment", limits)
    router.add_patch("/api/v1/environment", set_limits)
