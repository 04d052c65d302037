"""Routes of batches: `POST /api/v1/tasks/{taskId}/batch`, `POST /api/v1/tasks/batch` and
`GET /api/v2/batches/{batchId}`. A batch is accepted or refused whole (one transaction)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
from aiohttp import web
from slipstream_platform import metrics, packets, telemetry, tokens
from slipstream_platform.batching import (
    BatchItem,
    BatchResult,
    append_batch,
    batch_key_ttl,
    plan_batch,
    trigger_batch,
)
from slipstream_platform.http import HttpError, decode_body, json_response
from slipstream_platform.service import Service
from slipstream_platform.settings import TriggerApiSettings
from slipstream_platform.store import batches as batch_store
from slipstream_platform.store import runs as run_store
from slipstream_platform.store.environments import Environment
from slipstream_platform.triggering import Parent, TriggerRejected, forget_unused, offload, used_payloads
from slipstream_proto import (
    Batch,
    BatchAppendRequest,
    BatchOptions,
    BatchRunHandle,
    BatchTriggerRequest,
    BatchTriggerResponse,
    BatchTriggerTasksRequest,
)

Authenticate = Callable[[web.Request], Awaitable[Environment]]
Authorize = Callable[[web.Request], Awaitable[tokens.Access]]
_task_decoder = msgspec.json.Decoder(BatchTriggerRequest)
_tasks_decoder = msgspec.json.Decoder(BatchTriggerTasksRequest)
_append_decoder = msgspec.json.Decoder(BatchAppendRequest)
_tracer = telemetry.tracer(__name__)


def add_routes(service: Service[TriggerApiSettings], authenticate: Authenticate, authorize: Authorize,
               store: packets.PacketStore) -> None:
    """Register the batch routes."""
    pool = service.pool

    async def parent_of(env: Environment, items: list[BatchItem]) -> Parent | None:
        """The run every item is a child of (the SDK sets it inside a task), or None."""
        parents = {item.options.parent_run_id for item in items if item.options is not None}
        parents.discard(None)
        if not parents:
            return None
        if len(parents) > 1 or any(item.options is None or item.options.parent_run_id is None for item in items):
            raise HttpError(422, "every item of a batch must name the same parentRunId, or none")
        parent_id = parents.pop()
        assert parent_id is not None
        row = await run_store.get(pool, env.id, parent_id)
        if row is None:
            raise HttpError(422, f"parentRunId {parent_id!r} is not a run of this environment")
        return Parent.of(row)

    async def create(request: web.Request, access: tokens.Access, items: list[BatchItem],
                     options: BatchOptions | None, task_identifier: str | None) -> web.Response:
        env = access.environment
        for task in dict.fromkeys(item.task_identifier for item in items):
            access.require_trigger(task)
        options = options or BatchOptions()
        key = options.idempotency_key
        if key is None:
            key = request.headers.get("idempotency-key")
        try:
            ttl = batch_key_ttl(key, options.idempotency_key_ttl)
            plans = plan_batch(items, environment_type=env.type, now=datetime.now(UTC))
            parent = await parent_of(env, items)
            if access.jti is not None:  # spent once the batch is known to be well formed
                async with pool.acquire() as conn:
                    await tokens.use_once(conn, access)
            plans = await offload(store, plans, env.id)
            with _tracer.start_as_current_span("batch", attributes={"items": len(items)}) as span:
                try:
                    async with pool.acquire() as conn:
                        result = await trigger_batch(
                            conn, plans, environment_id=env.id, task_identifier=task_identifier, parent=parent,
                            traceparent=telemetry.traceparent(),
                            request_id=request.headers.get("x-slipstream-request-id"),
                            idempotency_key=key, idempotency_ttl_seconds=ttl, open=options.open,
                            lock_parent=True)
                except BaseException:
                    await forget_unused(store, plans)
                    raise
                await forget_unused(store, plans, used_payloads(plans, result.runs))
                span.set_attribute("batch", result.batch_id)
        except TriggerRejected as exc:
            raise HttpError(exc.status, exc.message) from None
        await service.bus.announce(result.transitions, "triggered")
        for run, task in zip(result.runs, result.task_identifiers, strict=True):
            if not run.is_cached:
                metrics.child(metrics.triggers, task).inc()
        return json_response(_answer(result), status=202,
                             headers={tokens.HEADER: access.mint([f"read:batch:{result.batch_id}"])})

    async def batch_of_task(request: web.Request) -> web.Response:
        access = await authorize(request)
        task_id = request.match_info["task_id"]
        body = decode_body(await _read(request), _task_decoder)
        items = [BatchItem(task_id, item.payload, item.options) for item in body.items]
        return await create(request, access, items, body.options, task_id)

    async def batch_of_tasks(request: web.Request) -> web.Response:
        access = await authorize(request)
        body = decode_body(await _read(request), _tasks_decoder)
        items = [BatchItem(item.task, item.payload, item.options) for item in body.items]
        return await create(request, access, items, body.options, None)

    async def append(request: web.Request) -> web.Response:
        env = await authenticate(request)
        batch_id = request.match_info["batch_id"]
        body = decode_body(await _read(request), _append_decoder)
        items = [BatchItem(item.task, item.payload, item.options) for item in body.items]
        try:
            async with pool.acquire() as conn:
                # Where this chunk starts, for the errors that name an item.
                first = await conn.fetchval("SELECT cardinality(run_ids) FROM batches WHERE id = $1"
                                            " AND environment_id = $2", batch_id, env.id)
                plans = plan_batch(items, environment_type=env.type, now=datetime.now(UTC), first_index=first or 0)
                plans = await offload(store, plans, env.id)
                try:
                    result = await append_batch(conn, plans, environment_id=env.id, batch_id=batch_id,
                                                seal=body.seal, traceparent=telemetry.traceparent(),
                                                request_id=request.headers.get("x-slipstream-request-id"))
                except BaseException:
                    await forget_unused(store, plans)
                    raise
                await forget_unused(store, plans, used_payloads(plans, result.runs))
        except TriggerRejected as exc:
            raise HttpError(exc.status, exc.message) from None
        await service.bus.announce(result.transitions, "triggered")
        return json_response(_answer(result), status=202)

    async def retrieve(request: web.Request) -> web.Response:
        env = await authenticate(request)
        view = await batch_store.get(pool, env.id, request.match_info["batch_id"])
        if view is None:
            raise HttpError(404, "Batch not found")
        b = view.batch
        return json_response(Batch(id=b.id, status=view.status,  # type: ignore[arg-type]
                                   idempotency_key=b.idempotency_key, run_count=len(b.run_ids), runs=b.run_ids,
                                   created_at=b.created_at, updated_at=b.updated_at))

    service.app.router.add_post("/api/v1/tasks/batch", batch_of_tasks)
    service.app.router.add_post("/api/v1/tasks/{task_id}/batch", batch_of_task)
    service.app.router.add_get("/api/v2/batches/{batch_id}", retrieve)
    service.app.router.add_post("/api/v2/batches/{batch_id}/items", append)


async def _read(request: web.Request) -> bytes:
    body = await request.read()
    if not body:
        raise HttpError(400, 'request body is empty: send {"items": [...]}')
    return body


def _answer(result: BatchResult) -> BatchTriggerResponse:
    return BatchTriggerResponse(id=result.batch_id, is_cached=result.is_cached, runs=[
        BatchRunHandle(id=run.run_id, task_identifier=task, is_cached=run.is_cached)
        for run, task in zip(result.runs, result.task_identifiers, strict=True)])
