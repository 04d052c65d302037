"""One trace from the trigger request to the attempt, across the trigger-api and the supervisor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slipstream import runs

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


async def spans_of(http: aiohttp.ClientSession, run_id: str) -> dict[str, Any]:
    async with http.get(f"/api/v1/runs/{run_id}/spans") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_the_api_serves_the_trace_of_a_run_and_its_children(
    platform: Platform, http: aiohttp.ClientSession, sdk: None
) -> None:
    run_id = await trigger(http, "traced", {})
    child_id = (await finished(http, run_id))["output"]
    other_id = await trigger(http, "echo", {"payload": "not in the trace"})

    async def complete() -> dict[str, Any] | None:
        # The last span to end is the resumed attempt's, written within a flush interval.
        body = await spans_of(http, run_id)
        names = [(span["name"], span["runId"]) for span in body["data"]]
        wanted = {("trigger", run_id), ("own work", run_id), ("run traced", run_id), ("trigger", child_id),
                  ("attempt", child_id), ("run echo", child_id)}
        return body if wanted <= set(names) and names.count(("attempt", run_id)) == 2 else None

    body = await eventually(complete, timeout=15, message="the run's spans")
    spans = body["data"]
    by_id = {span["spanId"]: span for span in spans}
    assert len(by_id) == len(spans) and {span["runId"] for span in spans} == {run_id, child_id}
    assert [span["startTime"] for span in spans] == sorted(span["startTime"] for span in spans)
    trigger_span = next(s for s in spans if s["name"] == "trigger" and s["runId"] == run_id)
    assert trigger_span["service"] == "trigger-api" and trigger_span["parentSpanId"] is None
    assert len(body["traceId"]) == 32
    for span in spans:
        assert span["durationMs"] >= 0 and span["status"] in ("UNSET", "OK", "ERROR")
        if span is not trigger_span:  # every other span hangs under one of the trace's spans
            assert span["parentSpanId"] in by_id, span
    own = next(s for s in spans if s["name"] == "own work")
    assert own["attributes"] == {"step": "one"} and by_id[own["parentSpanId"]]["name"] == "run traced"
    # The child was triggered by the attempt that suspended to wait for it.
    child_trigger = next(s for s in spans if s["name"] == "trigger" and s["runId"] == child_id)
    assert child_trigger["service"] == "supervisor"
    assert (by_id[child_trigger["parentSpanId"]]["name"], by_id[child_trigger["parentSpanId"]]["runId"]) == (
        "attempt", run_id)
    # The suspended attempt is not an error.
    assert all(span["status"] != "ERROR" for span in spans), spans
    await finished(http, other_id)
    assert all(span["runId"] != other_id for span in (await spans_of(http, run_id))["data"])
    # The SDK reads the same, typed.
    typed = await runs.spans(run_id)
    assert typed.trace_id == body["traceId"] and [s.span_id for s in typed.data][:len(spans)] == list(by_id)


async def test_the_spans_endpoint_refuses_what_it_cannot_serve(
    platform: Platform, http: aiohttp.ClientSession
) -> None:
    async with http.get("/api/v1/runs/run_doesnotexist/spans") as response:
        assert response.status == 404 and await response.json() == {"error": "Run not found"}
    async with aiohttp.ClientSession(base_url=platform.api_url) as anonymous, \
            anonymous.get("/api/v1/runs/run_doesnotexist/spans") as response:
        assert response.status == 401 and "error" in await response.json()
