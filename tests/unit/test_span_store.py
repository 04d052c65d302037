"""The postgres exporter's span processor: what it records of each finished span."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode
from slipstream_core import ipc
from slipstream_platform.telemetry import StoreProcessor


@pytest.fixture
def recorded() -> tuple[TracerProvider, list[ipc.SpanRecord]]:
    records: list[ipc.SpanRecord] = []
    provider = TracerProvider(resource=Resource.create({"service.name": "supervisor"}))
    provider.add_span_processor(StoreProcessor(records.extend))
    return provider, records


def test_a_span_without_a_run_belongs_to_the_run_of_its_parent(recorded: tuple[TracerProvider, list]) -> None:
    provider, records = recorded
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("attempt", attributes={"run": "run_1"}), \
            tracer.start_as_current_span("inner", attributes={"tags": ("a", "b")}), \
            tracer.start_as_current_span("innermost"):
        pass
    with tracer.start_as_current_span("alone"):
        pass
    by_name = {record.name: record for record in records}
    assert [by_name[name].run_id for name in ("attempt", "inner", "innermost", "alone")] == [
        "run_1", "run_1", "run_1", None]
    assert by_name["inner"].attributes == {"tags": ["a", "b"]}
    assert by_name["inner"].parent_span_id == by_name["attempt"].span_id
    assert by_name["attempt"].parent_span_id is None and by_name["alone"].parent_span_id is None
    assert len(by_name["attempt"].trace_id) == 32 and len(by_name["attempt"].span_id) == 16
    assert by_name["attempt"].service == "supervisor"
    assert all(record.end_ns >= record.start_ns > 0 for record in records)
    # Nothing is left behind for spans that ended.
    assert provider._active_span_processor._span_processors[0].runs == {}  # type: ignore[attr-defined]


def test_a_run_set_after_the_start_counts_and_errors_keep_their_exception(
    recorded: tuple[TracerProvider, list]
) -> None:
    provider, records = recorded
    tracer = provider.get_tracer("test")
    with pytest.raises(ValueError), tracer.start_as_current_span("trigger") as span:
        span.set_attribute("run", "run_2")
        raise ValueError("bad payload")
    with tracer.start_as_current_span("described") as span:
        span.set_status(Status(StatusCode.ERROR, "it broke"))
    trigger, described = records
    assert trigger.run_id == "run_2" and trigger.status == "ERROR"
    assert [event["name"] for event in trigger.events] == ["exception"]
    assert trigger.events[0]["attributes"]["exception.message"] == "bad payload"
    assert described.attributes == {"otel.status_description": "it broke"}


def test_records_cross_the_worker_pipe(recorded: tuple[TracerProvider, list]) -> None:
    provider, records = recorded
    with provider.get_tracer("test").start_as_current_span("run echo", attributes={"run": "run_3", "attempt": 1}):
        pass
    framed = ipc.frame(ipc.Spans(spans=records))
    decoded = ipc._decoder.decode(framed[4:])
    assert decoded == ipc.Spans(spans=records)
