"""One trace from the trigger request to the attempt, across the trigger-api and the supervisor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import eventually
from tests.e2e.conftest import Platform
from tests.e2e.test_runs import finished, trigger

pytestmark = pytest.mark.e2e


def spans_in(log: Path) -> list[dict[str, Any]]:
    """The spans the console exporter wrote into a service log."""
    text = log.read_text(errors="replace")
    decoder = json.JSONDecoder()
    spans, index = [], text.find('{\n    "name"')
    while index != -1:
        try:
            span, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            end = index + 1
        else:
            spans.append(span)
        index = text.find('{\n    "name"', end)
    return spans


async def test_trigger_and_attempt_share_one_trace(platform: Platform, http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "echo", {"payload": "traced"})
    await finished(http, run_id)
    logs = platform.local.logs

    async def find() -> dict[str, dict[str, Any]] | None:
        found = {}
        # The worker process writes to the supervisor's log: its span is "run <task>".
        for service, name in (("trigger_api", "trigger"), ("supervisor", "attempt"), ("supervisor", "run echo")):
            for span in spans_in(logs / f"{service}.log"):
                if span["name"] == name and span["attributes"].get("run") == run_id:
                    found[name] = span
        return found if len(found) == 3 else None

    spans = await eventually(find, timeout=15, message="spans of the two services")
    trace_ids = {span["context"]["trace_id"] for span in spans.values()}
    assert len(trace_ids) == 1
    # The run row carries the trigger's trace context to the supervisor that takes it.
    assert spans["attempt"]["parent_id"] == spans["trigger"]["context"]["span_id"]
    # The task's own code runs in a span of the worker process, under the attempt.
    assert spans["run echo"]["parent_id"] == spans["attempt"]["context"]["span_id"]


async def test_an_incoming_traceparent_is_continued(platform: Platform, http: aiohttp.ClientSession) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with http.post("/api/v1/tasks/echo/trigger", json={"payload": "continued"},
                         headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}) as response:
        run_id = (await response.json())["id"]
    await finished(http, run_id)

    async def find() -> dict[str, Any] | None:
        for span in spans_in(platform.local.logs / "trigger_api.log"):
            if span["name"] == "trigger" and span["attributes"].get("run") == run_id:
                return span
        return None

    span = await eventually(find, timeout=15, message="the trigger span")
    assert span["context"]["trace_id"] == f"0x{trace_id}" and span["parent_id"] == "0x00f067aa0ba902b7"
