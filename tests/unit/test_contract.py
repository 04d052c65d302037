"""The committed contract documents equal what the Structs generate (`make openapi` writes them)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from slipstream_proto.openapi import events_schema, openapi_document

PROTO = Path(__file__).resolve().parents[2] / "proto"


def _serialized(document: dict[str, Any]) -> str:
    # Exactly as `slipstream gen-contract` (services/slipstream_cli/main.py) writes the files.
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize(
    ("name", "build"),
    [("openapi.json", openapi_document), ("events.schema.json", events_schema)],
    ids=["openapi", "events-schema"],
)
def test_committed_document_is_up_to_date(name: str, build: Callable[[], dict[str, Any]]) -> None:
    path = PROTO / name
    assert path.is_file(), f"proto/{name} is missing: run `make openapi` and commit it"
    assert path.read_text() == _serialized(build()), (
        f"proto/{name} is out of date with slipstream_proto: run `make openapi` and commit the result"
    )


def test_openapi_document_describes_the_two_endpoints() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) >= {"/api/v1/tasks/{taskId}/trigger", "/api/v3/runs/{runId}"}
    trigger = document["paths"]["/api/v1/tasks/{taskId}/trigger"]["post"]
    assert set(trigger["responses"]) == {"200", "400", "401", "403", "408", "413", "422", "429"}
    assert {"TriggerRequest", "TriggerOptions", "TriggerResponse", "Run", "ErrorBody"} <= set(
        document["components"]["schemas"]
    )


def test_events_schema_lists_every_event_and_realtime_message() -> None:
    schema = events_schema()
    refs = {entry["$ref"].rsplit("/", 1)[-1] for entry in schema["oneOf"]}
    assert refs == {"QueueSignal", "CancelRun", "RunUpdated", "RealtimeRun", "RealtimeError"}
    assert refs <= set(schema["$defs"])
