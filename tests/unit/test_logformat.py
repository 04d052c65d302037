"""SLIPSTREAM_LOG_FORMAT=json: one JSON object a line, with the run and the trace."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider
from slipstream_platform.logformat import JsonFormatter, current_run


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            info = sys.exc_info()
    return logging.LogRecord("slipstream.test", logging.WARNING, __file__, 1, message, args, info)


def test_a_line_names_the_service_the_run_and_the_trace() -> None:
    formatter = JsonFormatter("supervisor")
    plain = json.loads(formatter.format(record("took %d runs", 3)))
    assert plain["service"] == "supervisor" and plain["message"] == "took 3 runs" and plain["level"] == "WARNING"
    assert "runId" not in plain and "traceId" not in plain
    token = current_run.set("run_1")
    try:
        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("attempt"):
            line = json.loads(formatter.format(record("attempt failed", exc=True)))
    finally:
        current_run.reset(token)
    assert line["runId"] == "run_1" and len(line["traceId"]) == 32 and len(line["spanId"]) == 16
    assert "ValueError: boom" in line["exception"]


def test_the_sdk_sends_the_callers_trace() -> None:
    from slipstream import _client, _config

    config = _config.ClientConfig(api_url="http://x", secret_key="sk", realtime_url="http://x")
    assert "traceparent" not in _client._headers(config)  # no span: nothing sent
    with TracerProvider().get_tracer("test").start_as_current_span("view") as span:
        sent = _client._headers(config)
    assert sent["traceparent"].split("-")[1] == format(span.get_span_context().trace_id, "032x")
