"""The OpenAPI document of trigger-api and the JSON Schema of the events, built from the Structs.

`slipstream gen-contract` writes them to proto/openapi.json and proto/events.schema.json;
a test checks the committed files equal what this module builds.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import msgspec

from slipstream_proto.events import CancelRun, QueueSignal, RunUpdated
from slipstream_proto.http import (
    DURATION_PATTERN,
    TASK_ID_PATTERN,
    AddTagsRequest,
    Batch,
    BatchAppendRequest,
    BatchTriggerRequest,
    BatchTriggerResponse,
    BatchTriggerTasksRequest,
    CreateDeploymentRequest,
    CreateScheduleRequest,
    CreateTokenRequest,
    Deployment,
    DeploymentList,
    EnvironmentLimits,
    EnvironmentLimitsUpdate,
    ErrorBody,
    PublicToken,
    QueueList,
    RegionList,
    RescheduleRequest,
    ResetIdempotencyKeyRequest,
    Run,
    RunList,
    RunLogs,
    RunMetadata,
    RunReference,
    RunSpans,
    RunTags,
    Schedule,
    SchedulePage,
    StepRequest,
    Timezones,
    TriggerRequest,
    TriggerResponse,
    UpdateMetadataRequest,
    UpdateScheduleRequest,
)
from slipstream_proto.realtime import RealtimeError, RealtimeRun
from slipstream_proto.statuses import RunStatus

REF = "#/components/schemas/{name}"


def _components(types: Sequence[type], ref_template: str) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """`msgspec.json.schema_components`, with docstrings dedented the same whatever the msgspec
    version (0.23 dedents them, 0.22 did not), so the committed documents do not change."""
    schemas, components = msgspec.json.schema_components(types, ref_template=ref_template)
    for component in components.values():
        if isinstance(component.get("description"), str):
            component["description"] = inspect.cleandoc(component["description"])
    return schemas, components


def _json(ref: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _listing_params() -> list[dict[str, Any]]:
    """The query parameters of `GET /api/v1/runs`."""
    def param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}

    # An empty filter is a 400 ("give one value or a comma-separated list").
    # A NUL in any of them is a 400 too (Postgres cannot compare text with one).
    text = {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]*$"}
    whole = {"type": "integer", "minimum": 0, "maximum": 253_402_300_799_999}  # to the end of year 9999
    maybe_empty = {"type": "string", "pattern": "^[^\\u0000]*$"}
    statuses = "|".join(sorted(s.value for s in RunStatus))
    return [
        param("page[size]", "Runs a page, 1-100 (25)", {"type": "integer", "minimum": 1, "maximum": 100}),
        param("page[after]", "The page of runs older than this run (a page's pagination.next)", text),
        param("page[before]", "The page of runs newer than this run (a page's pagination.previous)", text),
        param("filter[status]", "Statuses, comma-separated; an unknown one is a 400",
              {"type": "string", "pattern": f"^(?:{statuses})(?:,(?:{statuses}))*$"}),
        param("filter[taskIdentifier]", "Task identifiers, comma-separated (20 at most)", text),
        param("filter[version]", "Worker versions, comma-separated", text),
        param("filter[tag]", "Tags, comma-separated: runs with any of them", text),
        param("filter[queue]", "Queue names, comma-separated", text),
        param("filter[batch]", "The batch that created the runs", maybe_empty),
        param("filter[schedule]", "The schedule whose ticks created the runs", maybe_empty),
        param("filter[isTest]", "true or false (no run is a test run yet)", {"type": "boolean"}),
        param("filter[createdAt][from]", "Created at or after, milliseconds since the epoch", whole),
        param("filter[createdAt][to]", "Created at or before, milliseconds since the epoch", whole),
        param("filter[createdAt][period]", "Created within this duration of now (\"1h\", \"7d\")",
              {"type": "string", "pattern": DURATION_PATTERN}),
    ]


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for the HTTP API."""
    document = _operations()
    error = {"$ref": REF.format(name="ErrorBody")}
    for path in document["paths"].values():
        for operation in path.values():
            # Any request with a key may meet the key's rate limit; any body, the body timeout.
            if operation.get("security") != []:
                operation["responses"].setdefault("429", {
                    "description": "Over the key's rate limit (SLIPSTREAM_RATE_LIMIT); see Retry-After",
                    "content": {"application/json": {"schema": error}}})
            if "requestBody" in operation:
                operation["responses"].setdefault("408", {
                    "description": "The body did not arrive within SLIPSTREAM_HTTP_BODY_TIMEOUT",
                    "content": {"application/json": {"schema": error}}})
    return document


def _operations() -> dict[str, Any]:
    (trigger_req, trigger_resp, run, error, reference, logs, reschedule, reset, schedule, create_schedule,
     update_schedule, schedule_page, zones, queue_list, env_limits, env_update, batch_req, batch_tasks_req,
     batch_resp, batch, step, batch_append, run_list, tags_req, run_tags, metadata_req, run_metadata, token_req,
     token, deployment, deployment_list, create_deployment, region_list, spans), components = (
        _components(
            [TriggerRequest, TriggerResponse, Run, ErrorBody, RunReference, RunLogs, RescheduleRequest,
             ResetIdempotencyKeyRequest, Schedule, CreateScheduleRequest, UpdateScheduleRequest, SchedulePage,
             Timezones, QueueList, EnvironmentLimits, EnvironmentLimitsUpdate, BatchTriggerRequest,
             BatchTriggerTasksRequest, BatchTriggerResponse, Batch, StepRequest, BatchAppendRequest, RunList,
             AddTagsRequest, RunTags, UpdateMetadataRequest, RunMetadata, CreateTokenRequest, PublicToken,
             Deployment, DeploymentList, CreateDeploymentRequest, RegionList, RunSpans],
            ref_template=REF,
        )
    )
    queue_name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    run_id = [{"name": "runId", "in": "path", "required": True, "schema": {"type": "string"}}]
    errors = {
        str(status): _json(error, text)
        for status, text in [
            (400, "Invalid JSON or fields"),
            (401, "Invalid or Missing API key (or an expired, forged or spent public access token)"),
            (403, "A public access token whose scopes do not include what was asked (the scope is named)"),
            (413, "Request body too large"),
            (422, "Valid JSON that breaks a rule"),
        ]
    }
    security: list[dict[str, list[str]]] = [{"secretKey": []}]
    # Endpoints a browser may call with a public access token instead of the secret key (ADR 0011).
    public: list[dict[str, list[str]]] = [{"secretKey": []}, {"publicAccessToken": []}]
    token_header = {"x-slipstream-jwt": {"description": "A public access token that reads what was made for"
                                                        " an hour", "schema": {"type": "string"}}}
    schedule_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    version = [{"name": "version", "in": "path", "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"}}]

    def op(summary: str, operation: str, ok: dict[str, Any], *, body: dict[str, Any] | None = None,
           params: list[dict[str, Any]] | None = None, fails: tuple[int, ...] = (401,), code: int = 200
           ) -> dict[str, Any]:
        spec: dict[str, Any] = {"summary": summary, "operationId": operation, "responses": {str(code): ok}}
        if params:
            spec["parameters"] = params
        if body is not None:
            spec["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        for status in fails:
            spec["responses"][str(status)] = errors.get(str(status)) or _json(
                error, "Conflicts with the current state (of the run, the batch or the environment)"
                if status == 409 else "Not found")
        return spec

    return {
        "openapi": "3.1.0",
        "info": {"title": "Slipstream API", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "secretKey": {"type": "http", "scheme": "bearer"},
                "publicAccessToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                      "description": "Scoped and expiring (POST /api/v1/auth/tokens); realtime"
                                                     " also takes it as ?token="},
            },
        },
        "security": security,
        "paths": {
            "/api/v1/tasks/{taskId}/trigger": {
                "post": {
                    "summary": "Trigger a run of a task",
                    "operationId": "triggerTask",
                    "parameters": [
                        {"name": "taskId", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": TASK_ID_PATTERN}}
                    ],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": trigger_req}}},
                    "responses": {"200": {**_json(trigger_resp, "The new run"), "headers": token_header}, **errors},
                    "security": public,
                }
            },
            "/api/v1/auth/tokens": {
                "post": op("Mint a public access token: scopes such as read:runs:<id>, read:tags:<tag>,"
                           " read:batch:<id>, read:tasks:<id>, trigger:tasks:<id>, read:all, write:all; an"
                           " expirationTime; oneShot for a trigger token that triggers once", "createPublicToken",
                           _json(token, "The signed token"), body=token_req, code=201, fails=(400, 401, 403, 422)),
            },
            "/api/v1/tasks/{taskId}/batch": {
                "post": {**op("Trigger 1 to 1,000 runs of a task in one request, accepted or refused whole"
                              " (a refused item is named by its index)", "batchTriggerTask",
                              {**_json(batch_resp, "The batch, with one run per item in the order of the items"),
                               "headers": token_header},
                              body=batch_req, code=202, fails=(400, 401, 403, 413, 422),
                              params=[{"name": "taskId", "in": "path", "required": True,
                                       "schema": {"type": "string", "pattern": TASK_ID_PATTERN}}]),
                 "security": public},
            },
            "/api/v1/tasks/batch": {
                "post": {**op("Trigger 1 to 1,000 runs of several tasks in one request, accepted or refused whole",
                              "batchTrigger", {**_json(batch_resp, "The batch, with one run per item in order"),
                                               "headers": token_header},
                              body=batch_tasks_req, code=202, fails=(400, 401, 403, 413, 422)), "security": public},
            },
            "/api/v2/batches/{batchId}": {
                "get": op("Retrieve a batch with its status and runs", "retrieveBatch", _json(batch, "The batch"),
                          params=[{"name": "batchId", "in": "path", "required": True,
                                   "schema": {"type": "string"}}], fails=(401, 404)),
            },
            "/api/v2/batches/{batchId}/items": {
                "post": op("Add 1 to 1,000 items to an open batch (options.open), sealing it with the last",
                           "appendBatch", _json(batch_resp, "The batch, with the runs of these items in order"),
                           body=batch_append, code=202, fails=(400, 401, 404, 409, 413, 422),
                           params=[{"name": "batchId", "in": "path", "required": True,
                                    "schema": {"type": "string"}}]),
            },
            "/api/v1/runs": {
                "get": op("List runs, newest first, a page at a time (keyset cursors: runs created meanwhile"
                          " never shift a page)", "listRuns", _json(run_list, "A page of runs"),
                          params=_listing_params(), fails=(400, 401, 422)),
            },
            "/api/v1/runs/{runId}/replay": {
                "post": op("Replay a run: a new run of its task with its payload, tags, metadata, queue and limits,"
                           " queued now and linked by replayedFromRunId", "replayRun",
                           _json(reference, "The new run's id"), params=run_id, fails=(401, 404)),
            },
            "/api/v1/runs/{runId}/metadata": {
                "put": op("Change a run's metadata: replace it, then apply operations in order (in Postgres, on"
                          " the locked row), and the parent's and root's operations; 256 KB at most",
                          "updateRunMetadata", _json(run_metadata, "The run's metadata after"), body=metadata_req,
                          params=run_id, fails=(400, 401, 404, 422)),
            },
            "/api/v1/runs/{runId}/tags": {
                "post": op("Add tags to a run (10 at most in all, each 1-128 characters; ones it has are skipped)",
                           "addRunTags", _json(run_tags, "The run's tags after"), body=tags_req, params=run_id,
                           fails=(400, 401, 404, 422)),
            },
            "/api/v3/runs/{runId}": {
                "get": {
                    "summary": "Retrieve a run",
                    "operationId": "retrieveRun",
                    "parameters": [
                        {"name": "runId", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _json(run, "The run"),
                        "401": errors["401"],
                        "403": errors["403"],
                        "404": _json(error, "Run not found"),
                    },
                    "security": public,
                }
            },
            "/api/v2/runs/{runId}/cancel": {
                "post": {
                    "summary": "Cancel a run and its unfinished child runs (idempotent)",
                    "operationId": "cancelRun",
                    "parameters": run_id,
                    "responses": {
                        "200": _json(reference, "The run's id"),
                        "401": errors["401"],
                        "404": _json(error, "Run not found"),
                    },
                }
            },
            "/api/v1/runs/{runId}/steps": {
                "post": op("Journal the result of a step of an executing attempt (the SDK's step(), from inside"
                           " the run)", "recordStep", _json({"type": "object"}, "The step's position"),
                           body=step, params=run_id, fails=(400, 401, 404, 409, 422)),
            },
            "/api/v1/runs/{runId}/reschedule": {
                "post": op("Move a DELAYED run to another time", "rescheduleRun", _json(run, "The run"),
                           body=reschedule, params=run_id, fails=(400, 401, 404, 422)),
            },
            "/api/v1/idempotencyKeys/{key}/reset": {
                "post": op("Forget an idempotency key of a task", "resetIdempotencyKey",
                           _json({"type": "object"}, "The key and task"), body=reset,
                           params=[{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}],
                           fails=(400, 401, 404, 422)),
            },
            "/api/v1/schedules": {
                "post": op("Create or update (by deduplicationKey) a schedule", "createSchedule",
                           _json(schedule, "The schedule"), body=create_schedule, fails=(400, 401, 422)),
                "get": op("List schedules", "listSchedules", _json(schedule_page, "A page of schedules"),
                          params=[{"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                                  {"name": "perPage", "in": "query",
                                   "schema": {"type": "integer", "minimum": 1, "maximum": 100}}],
                          fails=(400, 401)),
            },
            "/api/v1/schedules/{id}": {
                "get": op("Retrieve a schedule", "retrieveSchedule", _json(schedule, "The schedule"),
                          params=schedule_id, fails=(401, 404)),
                "put": op("Update an imperative schedule", "updateSchedule", _json(schedule, "The schedule"),
                          body=update_schedule, params=schedule_id, fails=(400, 401, 404, 422)),
                "delete": op("Delete an imperative schedule", "deleteSchedule", _json(schedule, "The deleted schedule"),
                             params=schedule_id, fails=(401, 404, 422)),
            },
            "/api/v1/schedules/{id}/activate": {
                "post": op("Activate a schedule", "activateSchedule", _json(schedule, "The schedule"),
                           params=schedule_id, fails=(401, 404)),
            },
            "/api/v1/schedules/{id}/deactivate": {
                "post": op("Deactivate a schedule", "deactivateSchedule", _json(schedule, "The schedule"),
                           params=schedule_id, fails=(401, 404)),
            },
            "/api/v1/queues": {
                "get": op("Queues with their limits and runs queued and running, per key", "listQueues",
                          _json(queue_list, "The queues")),
            },
            "/api/v1/queues/{name}/pause": {
                "post": op("Hold a queue's runs QUEUED", "pauseQueue", _json({"type": "object"}, "Paused"),
                           params=queue_name),
            },
            "/api/v1/queues/{name}/resume": {
                "post": op("Let a paused queue's runs start", "resumeQueue", _json({"type": "object"}, "Resumed"),
                           params=queue_name),
            },
            "/api/v1/environment": {
                "get": op("The environment's concurrency limit and burst factor", "environmentLimits",
                          _json(env_limits, "The limits")),
                "patch": op("Change the environment's limits", "setEnvironmentLimits", _json(env_limits, "The limits"),
                            body=env_update, fails=(400, 401, 422)),
            },
            "/api/v1/regions": {
                "get": op("The environment's regions: its default, and each region a worker registered with",
                          "listRegions", _json(region_list, "The regions")),
            },
            "/api/v1/deployments": {
                "get": op("The environment's versions: current, draining or inactive, with live workers and the"
                          " unfinished runs locked to each", "listDeployments", _json(deployment_list, "The versions")),
                "post": op("Register a version's task catalog (what `slipstream deploy` sends); with `promote`,"
                           " make it current", "createDeployment", _json(deployment, "The version"),
                           body=create_deployment, fails=(400, 401, 404, 409, 422), code=201),
            },
            "/api/v1/deployments/{version}": {
                "get": op("One version", "retrieveDeployment", _json(deployment, "The version"),
                          params=version, fails=(401, 404, 422)),
            },
            "/api/v1/deployments/{version}/promote": {
                "post": op("Make a registered version current: new runs go to its workers, others drain",
                           "promoteDeployment", _json(deployment, "The version"), params=version,
                           fails=(401, 404, 409, 422)),
            },
            "/api/v1/packets/{name}": {
                "get": {
                    "summary": "Read a payload or output over 512 KB through the presigned URL of a run"
                               " (payloadPresignedUrl / outputPresignedUrl): the signature is the credential",
                    "operationId": "readPacket",
                    "parameters": [
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "expires", "in": "query", "required": True, "schema": {"type": "integer"}},
                        {"name": "signature", "in": "query", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "The JSON as triggered or returned",
                                "content": {"application/json": {"schema": {}}}},
                        "403": _json(error, "A changed or expired URL"),
                        "404": _json(error, "Packet not found"),
                        "503": _json(error, "The payload store is unavailable"),
                    },
                    "security": [],
                },
            },
            "/api/v1/timezones": {
                "get": {**op("Every IANA time zone a schedule accepts (no key needed)", "timezones",
                             _json(zones, "The zones"), fails=()), "security": []},
            },
            "/api/v1/runs/{runId}/logs": {
                "get": {
                    "summary": "The lines `logger` wrote in the run's attempts",
                    "operationId": "runLogs",
                    "parameters": run_id,
                    "responses": {
                        "200": _json(logs, "The run's log lines, oldest first"),
                        "401": errors["401"],
                        "404": _json(error, "Run not found"),
                    },
                }
            },
            "/api/v1/runs/{runId}/spans": {
                "get": {
                    "summary": "The trace of the run and its descendants (with SLIPSTREAM_OTEL_EXPORTER=postgres)",
                    "operationId": "runSpans",
                    "parameters": run_id,
                    "responses": {
                        "200": _json(spans, "The spans, in the order they began"),
                        "401": errors["401"],
                        "404": _json(error, "Run not found"),
                    },
                }
            },
        },
    }


def events_schema() -> dict[str, Any]:
    """JSON Schema of every JetStream message and realtime websocket message."""
    schemas, components = _components(
        [QueueSignal, CancelRun, RunUpdated, RealtimeRun, RealtimeError],
        ref_template="#/$defs/{name}",
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Slipstream events",
        "oneOf": list(schemas),
        "$defs": components,
    }
