"""Routes of trigger-api: trigger a task, read a run, the OpenAPI document."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

import asyncpg
import msgspec
from aiohttp import web
from slipstream_core.durations import DurationOutOfRange, expiration_seconds, resolve_delay
from slipstream_platform import metrics, packets, ratelimit, telemetry, tokens
from slipstream_platform.http import HttpError, cors, decode_body, json_response
from slipstream_platform.service import Service
from slipstream_platform.settings import TriggerApiSettings
from slipstream_platform.store import idempotency, workers
from slipstream_platform.store import logs as log_store
from slipstream_platform.store import metadata as metadata_store
from slipstream_platform.store import runs as run_store
from slipstream_platform.store import spans as span_store
from slipstream_platform.store import waitpoints as waitpoint_store
from slipstream_platform.store.environments import Environment
from slipstream_platform.triggering import (
    TASK_ID,
    Parent,
    TriggerRejected,
    forget_unused,
    offload,
    payload_used,
    plan_run,
    trigger_run,
)
from slipstream_platform.views import PacketLinks, load_run
from slipstream_proto import (
    CancelRun,
    CreateTokenRequest,
    PublicToken,
    RescheduleRequest,
    ResetIdempotencyKeyRequest,
    RunLogLine,
    RunLogs,
    RunReference,
    RunSpan,
    RunSpanEvent,
    RunSpans,
    StepRequest,
    TriggerOptions,
    TriggerResponse,
)
from slipstream_proto.events import dispatch_subject
from slipstream_proto.openapi import openapi_document

from slipstream_server.trigger_api.batches_routes import add_routes as add_batch_routes
from slipstream_server.trigger_api.dashboard import add_dashboard
from slipstream_server.trigger_api.deployments_routes import add_routes as add_deployment_routes
from slipstream_server.trigger_api.queues_routes import add_routes as add_queue_routes
from slipstream_server.trigger_api.runs_routes import add_routes as add_run_routes
from slipstream_server.trigger_api.schedules_routes import add_routes as add_schedule_routes


class _TriggerBody(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """`TriggerRequest` as trigger-api reads it: the payload kept as the JSON text it came as
    (checked, not built into Python objects and encoded again: a 9 MB payload cost 3 copies)."""

    payload: msgspec.Raw = msgspec.Raw(b"null")
    context: Any = None
    options: TriggerOptions | None = None


_decoder = msgspec.json.Decoder(_TriggerBody)
_reschedule_decoder = msgspec.json.Decoder(RescheduleRequest)
_reset_decoder = msgspec.json.Decoder(ResetIdempotencyKeyRequest)
_step_decoder = msgspec.json.Decoder(StepRequest)
_token_decoder = msgspec.json.Decoder(CreateTokenRequest)
_encoder = msgspec.json.Encoder()
_tracer = telemetry.tracer(__name__)
log = logging.getLogger(__name__)

class _ServedCache:
    """Whether a live worker serves a task: yes-answers remembered for a second."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.yes: dict[tuple[str, str], float] = {}

    async def served(self, environment_id: str, task_id: str) -> bool:
        now = time.monotonic()
        key = (environment_id, task_id)
        if self.yes.get(key, 0) > now:
            return True
        if await workers.serves_task(self.pool, environment_id, task_id):
            self.yes[key] = now + 1.0
            return True
        return False


async def setup(service: Service[TriggerApiSettings]) -> None:
    """Register the routes."""
    service.app.middlewares.insert(0, cors(service.settings.cors_origins))  # outermost: errors get it too
    rate = ratelimit.parse(service.settings.rate_limit)
    if rate is not None:  # inside cors (a 429 gets its headers), outside json_errors (errors get the counts)
        service.app.middlewares.insert(1, ratelimit.rate_limits(rate))
    credentials = tokens.Credentials(service.pool)
    store = packets.open_store(service.settings, service.nc.jetstream())
    await store.prepare()

    async def close_store(app: web.Application) -> None:
        await store.close()

    service.app.on_cleanup.append(close_store)
    served = _ServedCache(service.pool)
    openapi = _encoder.encode(openapi_document())

    async def authorize(request: web.Request) -> tokens.Access:
        """What the request's credential may do: a secret key everything, a public token its scopes."""
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        return await credentials.access(credential if scheme.lower() == "bearer" else "")

    async def authenticate(request: web.Request) -> Environment:
        """The environment of a secret key (the endpoints a public token does not reach)."""
        access = await authorize(request)
        access.require_secret()
        return access.environment

    async def trigger(request: web.Request) -> web.Response:
        access = await authorize(request)
        env = access.environment
        task_id = request.match_info["task_id"]
        access.require_trigger(task_id)
        body = await request.read()
        if not body:
            raise HttpError(400, 'request body is empty: send {"payload": ...}')
        req = decode_body(body, _decoder)
        options = req.options or TriggerOptions()
        header_key = request.headers.get("idempotency-key")
        if header_key and options.idempotency_key is None:
            options = msgspec.structs.replace(options, idempotency_key=header_key)
        try:
            plan = plan_run(task_id, req.payload, options, environment_type=env.type, now=datetime.now(UTC))
            parent = None
            if options.parent_run_id is not None:
                parent_row = await run_store.get(service.pool, env.id, options.parent_run_id)
                if parent_row is None:
                    raise TriggerRejected(
                        422, f"parentRunId {options.parent_run_id!r} is not a run of this environment"
                    )
                parent = Parent.of(parent_row)
            is_served = (plan.delayed_until is None and plan.lock_to_version is None and plan.region is None
                         and await served.served(env.id, task_id))
            if packets.too_large(plan.payload_json):  # stored before the row that names it
                plan = (await offload(store, [plan], env.id))[0]
            # An incoming traceparent (the SDK sends the caller's) is continued.
            sent = request.headers.get("traceparent")
            incoming = telemetry.extract({"traceparent": sent} if sent else None)
            with _tracer.start_as_current_span("trigger", context=incoming, attributes={"task": task_id}) as span:
                try:
                    async with service.pool.acquire() as conn:
                        create = partial(trigger_run, conn, plan, environment_id=env.id, served=is_served,
                                         parent=parent, traceparent=telemetry.traceparent(),
                                         request_id=request.headers.get("x-slipstream-request-id"))
                        if access.jti is None:
                            result = await create()
                        else:  # a one-shot token is spent with the run it makes, or not at all
                            async with conn.transaction():
                                await tokens.use_once(conn, access)
                                result = await create()
                except BaseException:
                    await forget_unused(store, [plan])
                    raise
                if not payload_used(plan, result):  # an existing run stands for the trigger
                    await forget_unused(store, [plan])
                span.set_attribute("run", result.run_id)
                if result.transition is not None:
                    await service.bus.announce([result.transition], "triggered")
                if not result.is_cached:
                    metrics.child(metrics.triggers, task_id).inc()
        except TriggerRejected as exc:
            raise HttpError(exc.status, exc.message) from None
        return json_response(TriggerResponse(id=result.run_id, is_cached=result.is_cached),
                             headers={tokens.HEADER: access.mint([f"read:runs:{result.run_id}"])})

    async def reschedule(request: web.Request) -> web.Response:
        env = await authenticate(request)
        run_id = request.match_info["run_id"]
        body = decode_body(await request.read() or b"{}", _reschedule_decoder)
        now = datetime.now(UTC)
        try:
            delayed_until = resolve_delay(body.delay, now) or now
        except DurationOutOfRange as exc:
            raise HttpError(422, f"delay: {exc}") from None
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None
        if await run_store.get(service.pool, env.id, run_id) is None:
            raise HttpError(404, "Run not found")
        changed = await run_store.reschedule(service.pool, env.id, run_id, delayed_until)
        if changed is None:
            raise HttpError(400, "Cannot reschedule a run that is not delayed")
        await service.bus.announce([changed])
        run = await load_run(service.pool, env.id, run_id, links=links(request))
        return json_response(run)

    async def reset_idempotency_key(request: web.Request) -> web.Response:
        env = await authenticate(request)
        key = request.match_info["key"]
        body = decode_body(await request.read() or b"{}", _reset_decoder)
        if not TASK_ID.match(body.task_identifier):  # NUL and the like: Postgres would refuse them
            raise HttpError(422, f"taskIdentifier {body.task_identifier[:140]!r} is not a task id")
        if not await idempotency.reset(service.pool, env.id, body.task_identifier, key):
            raise HttpError(404, f"no idempotency key {key[:200]!r} for task {body.task_identifier!r}")
        return json_response({"key": key, "taskIdentifier": body.task_identifier})

    def links(request: web.Request) -> PacketLinks:
        return PacketLinks(service.settings.api_url or str(request.url.origin()), credentials)

    async def retrieve(request: web.Request) -> web.Response:
        access = await authorize(request)
        run_id = request.match_info["run_id"]
        run = await load_run(service.pool, access.environment.id, run_id, related=True, links=links(request))
        if run is None:
            access.require_read(f"read:runs:{run_id}", run_id=run_id)  # a token learns nothing of other runs
            raise HttpError(404, "Run not found")
        access.require_read(f"read:runs:{run_id}", run_id=run_id, task=run.task_identifier, tags=run.tags,
                            batch_id=run.batch_id)
        return json_response(run)

    async def packet(request: web.Request) -> web.StreamResponse:
        """A stored payload or output, for a presigned URL (the signature is the credential)."""
        name = request.match_info["name"]
        found = await credentials.signers(packets.environment_of(name))
        problem: str | None = "the URL's signature does not match"
        for key in found[1] if found is not None else []:  # any key of the environment still valid
            problem = packets.check_signature(key, name, request.query.get("expires", ""),
                                              request.query.get("signature", ""))
            if problem is None or "signature" not in problem:
                break
        if problem is not None:
            raise HttpError(403, problem)
        try:
            data = await store.get(name)
        except packets.PacketNotFound:
            raise HttpError(404, "Packet not found") from None
        except packets.StoreUnavailable as exc:
            raise HttpError(503, str(exc)) from None
        return web.Response(body=data, content_type="application/json")

    async def create_token(request: web.Request) -> web.Response:
        access = await authorize(request)
        access.require_secret()
        body = decode_body(await request.read() or b"{}", _token_decoder)
        try:
            lifetime = expiration_seconds(body.expiration_time, datetime.now(UTC))
            token, expires = tokens.mint(access.environment, access.key, body.scopes, lifetime,
                                         one_shot=body.one_shot)
        except ValueError as exc:
            raise HttpError(422, str(exc)) from None
        return json_response(PublicToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC)), status=201)

    async def housekeeping() -> None:
        """Every minute: forget spent tokens that expired, and day-old metadata request ids."""
        while True:
            await asyncio.sleep(60)
            try:
                await tokens.forget_spent(service.pool)
                await metadata_store.forget_requests(service.pool)
            except Exception:
                log.exception("housekeeping failed")

    async def cancel(request: web.Request) -> web.Response:
        env = await authenticate(request)
        run_id = request.match_info["run_id"]
        async with service.pool.acquire() as conn, conn.transaction():
            if await run_store.get(conn, env.id, run_id) is None:
                raise HttpError(404, "Run not found")
            canceled = await run_store.cancel(conn, env.id, run_id)
        freed = [env.id] if any(c.executing_worker_id for c in canceled) else []
        await service.bus.announce([c.transition for c in canceled], "released", freed)
        await service.bus.notify([(dispatch_subject(c.executing_worker_id),
                                   CancelRun(run_id=c.transition.run_id, worker_id=c.executing_worker_id))
                                  for c in canceled if c.executing_worker_id])
        return json_response(RunReference(id=run_id))

    async def record_step(request: web.Request) -> web.Response:
        env = await authenticate(request)
        body = decode_body(await request.read() or b"{}", _step_decoder)
        if body.seq < 0 or not 0 < len(body.name) <= 256 or "\x00" in body.name:
            raise HttpError(422, "a step needs a seq of 0 or more and a name of 1-256 characters")
        try:
            await waitpoint_store.record_step(service.pool, environment_id=env.id, run_id=request.match_info["run_id"],
                                              attempt_number=body.attempt_number, seq=body.seq, name=body.name,
                                              result_json=_encoder.encode(body.result).decode())
        except waitpoint_store.StepRunNotFound:
            raise HttpError(404, "Run not found") from None
        except waitpoint_store.StepRefused as exc:
            raise HttpError(409, str(exc)) from None
        except asyncpg.exceptions.DataError as exc:
            raise HttpError(422, f"the step's result cannot be stored: {exc}") from None
        return json_response({"seq": body.seq})

    async def run_logs(request: web.Request) -> web.Response:
        env = await authenticate(request)
        run_id = request.match_info["run_id"]
        if await run_store.get(service.pool, env.id, run_id) is None:
            raise HttpError(404, "Run not found")
        rows = await log_store.for_run(service.pool, run_id)
        return json_response(RunLogs(data=[
            RunLogLine(attempt_number=r["attempt_number"], level=r["level"], message=r["message"],
                       attributes=msgspec.json.decode(r["attributes"]), timestamp=r["logged_at"])
            for r in rows
        ]))

    async def run_spans(request: web.Request) -> web.Response:
        env = await authenticate(request)
        run_id = request.match_info["run_id"]
        row = await run_store.get(service.pool, env.id, run_id)
        if row is None:
            raise HttpError(404, "Run not found")
        parts = (row["traceparent"] or "").split("-")
        if len(parts) != 4:  # triggered while tracing was off
            return json_response(RunSpans(trace_id=None, data=[]))
        trace_id, span_id = parts[1], parts[2]
        rows = await span_store.for_run(service.pool, run_id, trace_id, span_id)
        return json_response(RunSpans(trace_id=trace_id, data=[
            RunSpan(span_id=r["span_id"], parent_span_id=r["parent_span_id"], run_id=r["run_id"], name=r["name"],
                    service=r["service"], start_time=r["started_at"], end_time=r["ended_at"],
                    duration_ms=r["duration_ns"] / 1e6, status=r["status"],
                    attributes=msgspec.json.decode(r["attributes"]),
                    events=[RunSpanEvent(name=e["name"], time=datetime.fromtimestamp(e["timeNs"] / 1e9, UTC),
                                         attributes=e["attributes"])
                            for e in msgspec.json.decode(r["events"])])
            for r in rows
        ]))

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=openapi, content_type="application/json")

    service.app.router.add_post("/api/v1/tasks/{task_id}/trigger", trigger)
    service.app.router.add_get("/api/v3/runs/{run_id}", retrieve)
    service.app.router.add_get("/api/v1/runs/{run_id}/logs", run_logs)
    service.app.router.add_get("/api/v1/runs/{run_id}/spans", run_spans)
    service.app.router.add_post("/api/v1/runs/{run_id}/steps", record_step)
    service.app.router.add_post("/api/v2/runs/{run_id}/cancel", cancel)
    service.app.router.add_post("/api/v1/runs/{run_id}/reschedule", reschedule)
    service.app.router.add_post("/api/v1/idempotencyKeys/{key}/reset", reset_idempotency_key)
    service.app.router.add_get("/openapi.json", openapi_json)
    service.app.router.add_post("/api/v1/auth/tokens", create_token)
    service.app.router.add_get("/api/v1/packets/{name:.+}", packet)
    service.spawn(housekeeping(), "housekeeping")
    add_schedule_routes(service, authenticate)
    add_queue_routes(service, authenticate)
    add_deployment_routes(service, authenticate)
    add_dashboard(service)
    add_batch_routes(service, authenticate, authorize, store)
    add_run_routes(service, authenticate)
