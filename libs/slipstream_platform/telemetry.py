"""OpenTelemetry: one tracer per service; context travels in NATS headers (traceparent).

Off by default (`SLIPSTREAM_OTEL_EXPORTER=none`): spans are then no-ops and cost nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from slipstream_platform.errors import SettingsError

_enabled = False


def setup(service_name: str, exporter: str) -> None:
    """Install a tracer provider for `exporter` (none, console or otlp). The standard variables
    apply too: `OTEL_TRACES_EXPORTER` when SLIPSTREAM_OTEL_EXPORTER is not set, `OTEL_SERVICE_NAME`
    for the service's name, and the exporter's own `OTEL_EXPORTER_OTLP_*`."""
    global _enabled
    standard = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" and "SLIPSTREAM_OTEL_EXPORTER" not in os.environ and standard in ("otlp", "console"):
        exporter = standard
    if exporter == "none":
        return
    service_name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    span_exporter: SpanExporter
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise SettingsError("SLIPSTREAM_OTEL_EXPORTER=otlp needs the OTLP exporter:"
                                " pip install 'slipstream[otel]'") from None

        span_exporter = OTLPSpanExporter()
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
