"""OpenTelemetry where it is installed (the SDK does not require it): the caller's trace goes
with each API request, and a worker process opens a span around the task's own code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping

try:
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - the SDK-only install
    propagate = trace = None  # type: ignore[assignment]


def inject(headers: MutableMapping[str, str]) -> None:
    """Add `traceparent` for the caller's current span, if it has one."""
    if trace is not None and trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers)


@contextlib.contextmanager
def task_span(name: str, traceparent: str | None, attributes: dict[str, str | int]) -> Iterator[None]:
    """A span around the task's code, child of the supervisor's attempt span."""
    if trace is None or traceparent is None:
        yield
        return
    parent = propagate.extract({"traceparent": traceparent})
    with trace.get_tracer("slipstream.worker").start_as_current_span(name, context=parent, attributes=attributes):
        yield
