"""How services write their log lines: text (the default) or one JSON object a line
(`SLIPSTREAM_LOG_FORMAT=json`), with the service, the run a line is about and the trace."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, datetime

import msgspec
from opentelemetry import trace

# The run the current task works on (the supervisor sets it around an attempt).
current_run: ContextVar[str | None] = ContextVar("slipstream_current_run", default=None)
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "service", "logger", "message", "runId"?, "traceId"?, "spanId"?, "exception"?}`."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        run_id = getattr(record, "run_id", None) or current_run.get()
        if run_id:
            line["runId"] = run_id
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["traceId"] = format(span.trace_id, "032x")
            line["spanId"] = format(span.span_id, "016x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


def configure(service: str, level: str, fmt: str) -> None:
    """Set up the root logger for a service process."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
