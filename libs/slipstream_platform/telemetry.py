"""OpenTelemetry: one tracer per service; context travels in NATS headers (traceparent).

Off by default (`SLIPSTREAM_OTEL_EXPORTER=none`): spans are then no-ops and cost nothing.
With `postgres` among the exporters, finished spans are also kept in the `run_spans` table,
where the runs API and the dashboard read a run's trace: a service writes its own spans, a
worker process hands its spans to its supervisor, which writes them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from slipstream_core.ipc import SpanRecord

from slipstream_platform.errors import SettingsError
from slipstream_platform.settings import otel_exporters

if TYPE_CHECKING:  # worker processes import this module and never write: no asyncpg for them
    import asyncpg

log = logging.getLogger(__name__)

# Spans waiting for the flusher; past this many (Postgres away for long), the oldest are dropped.
MAX_PENDING_SPANS = 20_000
FLUSH_INTERVAL_S = 0.2

_enabled = False
_pending: collections.deque[SpanRecord] = collections.deque(maxlen=MAX_PENDING_SPANS)
_storing = False


def setup(service_name: str, exporter: str, *, on_spans: Callable[[list[SpanRecord]], None] | None = None) -> None:
    """Install a tracer provider for `exporter`: none, or one or more of console, otlp and
    postgres, comma-separated. `on_spans` takes the postgres exporter's spans instead of this
    process writing them (a worker process sends them to its supervisor). The standard variables
    apply too: `OTEL_TRACES_EXPORTER` when SLIPSTREAM_OTEL_EXPORTER is not set, `OTEL_SERVICE_NAME`
    for the service's name, and the exporter's own `OTEL_EXPORTER_OTLP_*`."""
    global _enabled, _storing
    standard = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" and "SLIPSTREAM_OTEL_EXPORTER" not in os.environ and standard in ("otlp", "console"):
        exporter = standard
    try:
        names = otel_exporters(exporter)
    except ValueError:
        raise SettingsError(f"SLIPSTREAM_OTEL_EXPORTER={exporter!r}: use none, or one or more of"
                            " console, otlp and postgres, comma-separated") from None
    if not names:
        return
    service_name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if "console" in names:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    if "postgres" in names:
        provider.add_span_processor(StoreProcessor(on_spans or store_spans))
        _storing = on_spans is None
    if "otlp" in names:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise SettingsError("SLIPSTREAM_OTEL_EXPORTER=otlp needs the OTLP exporter:"
                                " pip install 'slipstream[otel]'") from None

        span_exporter: SpanExporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    _enabled = True


def shutdown() -> None:
    """Flush spans."""
    provider = trace.get_tracer_provider()
    if _enabled and isinstance(provider, TracerProvider):
        provider.shutdown()


def tracer(name: str) -> trace.Tracer:
    """The tracer for a module."""
    return trace.get_tracer(name)


def inject_headers() -> dict[str, str]:
    """The current trace context as headers (empty when tracing is off)."""
    headers: dict[str, str] = {}
    if _enabled:
        propagate.inject(headers)
    return headers


def extract(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context carried by message headers or a stored traceparent."""
    if not _enabled or not headers:
        return otel_context.get_current()
    return propagate.extract(dict(headers))


def traceparent() -> str | None:
    """The current span's traceparent, to store with a run."""
    return inject_headers().get("traceparent")


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return _enabled


def storing() -> bool:
    """Whether this process writes spans to Postgres (the postgres exporter, without `on_spans`)."""
    return _storing


def store_spans(spans: list[SpanRecord]) -> None:
    """Queue finished spans for the flusher (any thread)."""
    _pending.extend(spans)


async def flush_spans(pool: asyncpg.Pool) -> None:
    """Write the queued spans every FLUSH_INTERVAL_S until cancelled, then once more. A failed
    write keeps them for the next round (up to MAX_PENDING_SPANS)."""
    try:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await _write_pending(pool)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(_write_pending(pool))


async def _write_pending(pool: asyncpg.Pool) -> None:
    import asyncpg

    from slipstream_platform.store import spans as span_store

    batch: list[SpanRecord] = []
    while _pending and len(batch) < 1000:
        batch.append(_pending.popleft())
    if not batch:
        return
    try:
        await span_store.insert(pool, batch)
    except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError) as exc:  # Postgres away: again next round
        log.warning("could not store %d spans (%s); trying again", len(batch), exc)
        _pending.extendleft(reversed(batch))
    except asyncpg.PostgresError as exc:  # the spans themselves: not again
        log.warning("dropped %d spans Postgres refused: %s", len(batch), exc)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class StoreProcessor(SpanProcessor):
    """Turns each finished span into a SpanRecord for `sink`. A span that does not carry a `run`
    attribute belongs to the run of its parent span in this process, if that one had one."""

    def __init__(self, sink: Callable[[list[SpanRecord]], None]) -> None:
        self.sink = sink
        self.runs: dict[int, str | None] = {}
        self.lock = threading.Lock()

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        parent = span.parent
        run = (span.attributes or {}).get("run")
        with self.lock:
            if run is None and parent is not None:
                run = self.runs.get(parent.span_id)
            self.runs[span.context.span_id] = str(run) if run is not None else None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        with self.lock:
            inherited = self.runs.pop(context.span_id, None)
        attributes = {key: _plain(value) for key, value in (span.attributes or {}).items()}
        if span.status.description:
            attributes["otel.status_description"] = span.status.description
        run = attributes.get("run", inherited)
        self.sink([SpanRecord(
            trace_id=format(context.trace_id, "032x"),
            span_id=format(context.span_id, "016x"),
            parent_span_id=format(span.parent.span_id, "016x") if span.parent is not None else None,
            run_id=str(run) if run is not None else None,
            name=span.name,
            service=str(span.resource.attributes.get("service.name", "")),
            start_ns=span.start_time or 0,
            end_ns=span.end_time or span.start_time or 0,
            status=span.status.status_code.name,
            attributes=attributes,
            events=[{"name": event.name, "timeNs": event.timestamp,
                     "attributes": {key: _plain(value) for key, value in (event.attributes or {}).items()}}
                    for event in span.events],
        )])
