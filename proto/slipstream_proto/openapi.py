"""The OpenAPI document of trigger-api and the JSON Schema of the events, built from the Structs.

`slipstream gen-contract` writes them to proto/openapi.json and proto/events.schema.json;
a test checks the committed files equal what this module builds.
"""

from __future__ import annotations

from typing import Any

import msgspec

from slipstream_proto.events import CancelRun, DispatchRun, QueueSignal, RunUpdated
from slipstream_proto.http import ErrorBody, Run, RunLogs, RunReference, TriggerRequest, TriggerResponse
from slipstream_proto.realtime import RealtimeError, RealtimeRun

REF = "#/components/schemas/{name}"


def _json(ref: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for the HTTP API."""
    (trigger_req, trigger_resp, run, error, reference, logs), components = msgspec.json.schema_components(
        [TriggerRequest, TriggerResponse, Run, ErrorBody, RunReference, RunLogs], ref_template=REF
    )
    run_id = [{"name": "runId", "in": "path", "required": True, "schema": {"type": "string"}}]
    errors = {
        str(status): _json(error, text)
        for status, text in [
            (400, "Invalid JSON or fields"),
            (401, "Invalid or Missing API key"),
            (413, "Request body too large"),
            (422, "Valid JSON that breaks a rule"),
        ]
    }
    security: list[dict[str, list[str]]] = [{"secretKey": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Slipstream API", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"secretKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": security,
        "paths": {
            "/api/v1/tasks/{taskId}/trigger": {
                "post": {
                    "summary": "Trigger a run of a task",
                    "operationId": "triggerTask",
                    "parameters": [
                        {"name": "taskId", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": trigger_req}}},
                    "responses": {"200": _json(trigger_resp, "The new run"), **errors},
                }
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
                        "404": _json(error, "Run not found"),
                    },
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
        },
    }


def events_schema() -> dict[str, Any]:
    """JSON Schema of every JetStream message and realtime websocket message."""
    schemas, components = msgspec.json.schema_components(
        [QueueSignal, DispatchRun, CancelRun, RunUpdated, RealtimeRun, RealtimeError],
        ref_template="#/$defs/{name}",
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Slipstream events",
        "oneOf": list(schemas),
        "$defs": components,
    }
