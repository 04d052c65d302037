"""Routes of `/api/v1/deployments`: register a version's task catalog, promote one, list them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web
from slipstream_core.definitions import QueueDefinition, TaskDefinition, encode_tasks
from slipstream_core.versions import VERSION
from slipstream_platform.http import HttpError, decode_body, json_response
from slipstream_platform.scheduling import sync_schedules
from slipstream_platform.service import Service
from slipstream_platform.settings import TriggerApiSettings
from slipstream_platform.store import deployments
from slipstream_platform.store import runs as run_store
from slipstream_platform.store.deployments import DeploymentRow
from slipstream_platform.store.environments import Environment
from slipstream_platform.triggering import TASK_ID
from slipstream_proto import CreateDeploymentRequest, Deployment, DeploymentList

Authenticate = Callable[[web.Request], Awaitable[Environment]]
_create_decoder = msgspec.json.Decoder(CreateDeploymentRequest)


def _view(row: DeploymentRow) -> Deployment:
    return Deployment(version=row.version, status=row.status, tasks=row.task_ids,
                      live_workers=row.live_workers, unfinished_runs=row.unfinished_runs,
                      created_at=row.created_at, promoted_at=row.promoted_at)


def _version(text: str) -> str:
    if not VERSION.match(text):
        raise HttpError(422, f"version {text[:80]!r} is not valid: 1-64 letters, digits and ._+- starting with a"
                             " letter or digit")
    return text


def _refuse_development(env: Environment) -> None:
    if env.type == "DEVELOPMENT":
        raise HttpError(409, "DEVELOPMENT has no deployments to promote: every running dev worker is current;"
                             " deploy to STAGING, PRODUCTION or PREVIEW")


def add_routes(service: Service[TriggerApiSettings], authenticate: Authenticate) -> None:
    """Register the deployment routes."""
    pool = service.pool

    async def make_current(env: Environment, version: str) -> Deployment:
        """Promote the version: new runs go to its workers; its catalog's schedules and queues apply."""
        async with pool.acquire() as conn, conn.transaction():
            if not await deployments.promote(conn, env.id, version):
                known = await deployments.known(conn, env.id)
                raise HttpError(404, f"version {version!r} is not registered in this environment; known:"
                                     f" {', '.join(known[:20]) or 'none'}")
            found = await deployments.catalog(conn, env.id, version)
            assert found is not None
            if found["manifest"] is not None:
                tasks = msgspec.json.decode(found["manifest"], type=list[TaskDefinition])
                queues = msgspec.json.decode(found["queues"] or "[]", type=list[QueueDefinition])
                await sync_schedules(conn, env, tasks, queues)
            promoted = await run_store.promote_pending_version(conn, env.id)
            [row] = await deployments.listing(conn, env.id, version)
        # Its workers take the queued runs now: wake them.
        await service.bus.announce(promoted, "worker", [env.id])
        return _view(row)

    async def create(request: web.Request) -> web.Response:
        env = await authenticate(request)
        body = decode_body(await request.read(), _create_decoder)
        version = _version(body.version)
        try:
            tasks = msgspec.convert(body.tasks, list[TaskDefinition])
            queues = msgspec.convert(body.queues, list[QueueDefinition])
        except msgspec.ValidationError as exc:
            raise HttpError(422, f"tasks or queues are not task definitions as the SDK makes them: {exc}") from None
        for task in tasks:
            if not TASK_ID.match(task.id):
                raise HttpError(422, f"task id {task.id[:140]!r} is not valid")
        if body.promote:
            _refuse_development(env)
        await deployments.register(pool, env.id, version, sorted({t.id for t in tasks}),
                                   encode_tasks(tasks) if tasks else None,
                                   msgspec.json.encode(queues).decode() if tasks else None)
        if body.promote:
            return json_response(await make_current(env, version), status=201)
        [row] = await deployments.listing(pool, env.id, version)
        return json_response(_view(row), status=201)

    async def promote(request: web.Request) -> web.Response:
        env = await authenticate(request)
        _refuse_development(env)
        return json_response(await make_current(env, _version(request.match_info["version"])))

    async def listing(request: web.Request) -> web.Response:
        env = await authenticate(request)
        return json_response(DeploymentList(data=[_view(r) for r in await deployments.listing(pool, env.id)]))

    async def retrieve(request: web.Request) -> web.Response:
        env = await authenticate(request)
        version = _version(request.match_info["version"])
        rows = await deployments.listing(pool, env.id, version)
        if not rows:
            raise HttpError(404, "Deployment not found")
        found = await deployments.catalog(pool, env.id, version)
        tasks = msgspec.json.decode(found["manifest"], type=list[TaskDefinition]) if found and found["manifest"] else []
        schemas = {t.id: t.payload_schema for t in tasks if t.payload_schema is not None}
        return json_response(msgspec.structs.replace(_view(rows[0]), payload_schemas=schemas))

    router = service.app.router
    router.add_post("/api/v1/deployments", create)
    router.add_get("/api/v1/deployments", listing)
    router.add_get("/api/v1/deployments/{version}", retrieve)
    router.add_post("/api/v1/deployments/{version}/promote", promote)
