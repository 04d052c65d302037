"""Routes of `/api/v1/schedules` and `/api/v1/timezones` (shapes as the seed's SDK reference)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import msgspec
from aiohttp import web
from slipstream_core import cron
from slipstream_platform.http import HttpError, decode_body, json_response
from slipstream_platform.service import Service
from slipstream_platform.settings import TriggerApiSettings
from slipstream_platform.store import schedules
from slipstream_platform.store.environments import Environment
from slipstream_platform.views import schedule_view
from slipstream_proto import CreateScheduleRequest, SchedulePage, SchedulePagination, Timezones, UpdateScheduleRequest

Authenticate = Callable[[web.Request], Awaitable[Environment]]


_create_decoder = msgspec.json.Decoder(CreateScheduleRequest)
_update_decoder = msgspec.json.Decoder(UpdateScheduleRequest)


async def _checked(pool: asyncpg.Pool, env: Environment, task: str, expression: str, timezone: str) -> cron.CronSpec:
    """The schedule's cron, checked; 422 for a bad cron or zone, an unknown or unscheduled task."""
    try:
        spec = cron.parse(expression, timezone)
    except cron.CronError as exc:
        raise HttpError(422, str(exc)) from None
    kind = await schedules.task_kind(pool, env.id, task)
    if kind is None:
        raise HttpError(422, f"task {task!r} is unknown: no worker has registered it in this environment")
    if not kind:
        raise HttpError(422, f"task {task!r} is not a scheduled task: define it with schedules.task(...)")
    return spec


def add_routes(service: Service[TriggerApiSettings], authenticate: Authenticate) -> None:
    """Register the schedule routes."""
    pool = service.pool
    zones = msgspec.json.encode(Timezones(timezones=cron.timezones()))

    async def found(env: Environment, schedule_id: str) -> asyncpg.Record:
        row = await schedules.get(pool, env.id, schedule_id)
        if row is None:
            raise HttpError(404, "Schedule not found")
        return row

    async def create(request: web.Request) -> web.Response:
        env = await authenticate(request)
        body = decode_body(await request.read() or b"{}", _create_decoder)
        if not body.deduplication_key:
            raise HttpError(422, "deduplicationKey is required and must not be empty")
        if body.deduplication_key.startswith("declarative:"):
            raise HttpError(422, "deduplicationKeys starting with 'declarative:' belong to declarative schedules")
        spec = await _checked(pool, env, body.task, body.cron, body.timezone)
        row = await schedules.upsert(
            pool, environment_id=env.id, task_identifier=body.task, type="IMPERATIVE", cron=body.cron,
            timezone=body.timezone, external_id=body.external_id, deduplication_key=body.deduplication_key,
            next_run_at=cron.next_ticks(spec, datetime.now(UTC))[0],
        )
        return json_response(schedule_view(row, env.type))

    async def listing(request: web.Request) -> web.Response:
        env = await authenticate(request)
        try:
            page = int(request.query.get("page", "1"))
            per_page = int(request.query.get("perPage", "10"))
        except ValueError:
            raise HttpError(400, "page and perPage must be whole numbers") from None
        if page < 1 or not 1 <= per_page <= 100:
            raise HttpError(400, "page must be 1 or more and perPage 1-100")
        rows, count = await schedules.page(pool, env.id, page, per_page)
        return json_response(SchedulePage(
            data=[schedule_view(row, env.type) for row in rows],
            pagination=SchedulePagination(current_page=page, total_pages=-(-count // per_page), count=count),
        ))

    async def retrieve(request: web.Request) -> web.Response:
        env = await authenticate(request)
        return json_response(schedule_view(await found(env, request.match_info["id"]), env.type))

    async def update(request: web.Request) -> web.Response:
        env = await authenticate(request)
        row = await found(env, request.match_info["id"])
        body = decode_body(await request.read() or b"{}", _update_decoder)
        spec = await _checked(pool, env, body.task, body.cron, body.timezone)
        if row["type"] == "DECLARATIVE":
            raise HttpError(422, "a declarative schedule changes with its task's code, not over the API")
        updated = await schedules.update(
            pool, env.id, row["id"], task_identifier=body.task, cron=body.cron, timezone=body.timezone,
            external_id=body.external_id, next_run_at=cron.next_ticks(spec, datetime.now(UTC))[0],
        )
        assert updated is not None
        return json_response(schedule_view(updated, env.type))

    async def set_active(request: web.Request, active: bool) -> web.Response:
        env = await authenticate(request)
        row = await found(env, request.match_info["id"])
        spec = cron.parse(row["cron"], row["timezone"])
        updated = await schedules.update(pool, env.id, row["id"], active=active,
                                         next_run_at=cron.next_ticks(spec, datetime.now(UTC))[0])
        assert updated is not None
        return json_response(schedule_view(updated, env.type))

    async def activate(request: web.Request) -> web.Response:
        return await set_active(request, True)

    async def deactivate(request: web.Request) -> web.Response:
        return await set_active(request, False)

    async def delete(request: web.Request) -> web.Response:
        env = await authenticate(request)
        row = await found(env, request.match_info["id"])
        if row["type"] == "DECLARATIVE":
            raise HttpError(422, "a declarative schedule is removed with its task's cron, not over the API")
        await schedules.delete(pool, env.id, row["id"])
        return json_response(schedule_view(row, env.type))

    async def timezones(request: web.Request) -> web.Response:
        # Public, as the seed's: a page may list the zones before it has any key.
        return web.Response(body=zones, content_type="application/json")

    router = service.app.router
    router.add_post("/api/v1/schedules", create)
    router.add_get("/api/v1/schedules", listing)
    router.add_get("/api/v1/schedules/{id}", retrieve)
    router.add_put("/api/v1/schedules/{id}", update)
    router.add_delete("/api/v1/schedules/{id}", delete)
    router.add_post("/api/v1/schedules/{id}/activate", activate)
    router.add_post("/api/v1/schedules/{id}/deactivate", deactivate)
    router.add_get("/api/v1/timezones", timezones)
