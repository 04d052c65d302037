"""Messages between a supervisor and its worker processes, framed over a socket pair.

Each frame is a 4-byte big-endian length and a msgpack body. These never leave the
machine, so they live here and not in proto/.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

from slipstream_core.definitions import QueueDefinition, TaskDefinition


class Ready(msgspec.Struct, tag="ready", kw_only=True):
    """Sent once by a worker process after it imported the task module."""

    pid: int
    tasks: list[TaskDefinition]
    # Queues declared with queue(...), used by a task or not.
    queues: list[QueueDefinition] = []


class LoadFailed(msgspec.Struct, tag="load_failed", kw_only=True):
    """Sent instead of Ready when the task module could not be imported."""

    error: str


class Execute(msgspec.Struct, tag="execute", kw_only=True):
    """Run one attempt."""

    run_id: str
    task_id: str
    payload_json: str | None
    attempt_id: str
    attempt_number: int
    max_attempts: int
    created_at: str
    tags: list[str]
    environment_id: str
    environment_type: str
    # Seconds this attempt may still execute (the run's max_duration less earlier attempts).
    timeout_seconds: float | None = None
    max_duration: int | None = None
    machine: str = "small-1x"
    queue: str = ""
    journal: list[JournalEntry] = []
    # The run waited and is going on with its attempt (start hooks do not run again).
    resuming: bool = False
    # The run's metadata as the attempt starts (JSON object), if any.
    metadata_json: str | None = None
    # The supervisor's attempt span: the worker's span around the task's code is its child.
    traceparent: str | None = None


class JournalEntry(msgspec.Struct, kw_only=True):
    """A completed waitpoint: a replayed run returns its result at once."""

    seq: int
    type: str
    task_id: str | None = None
    result_json: str | None = None


class WaitRequest(msgspec.Struct, kw_only=True):
    """Where an attempt suspends: a time (DURATION), a child run to trigger and wait for (RUN),
    or a batch of child runs to trigger and wait for (BATCH: `items_json` is a JSON list of
    `{"task", "payload", "options"}`, up to 1,000; or `batch_id`, a sealed batch of this run
    that the worker streamed in chunks over HTTP)."""

    seq: int
    type: str
    resume_at: float | None = None
    task_id: str | None = None
    payload_json: str | None = None
    options_json: str | None = None
    items_json: str | None = None
    batch_id: str | None = None


class LogLine(msgspec.Struct, tag="log", kw_only=True):
    """A `logger` call inside an attempt, sent as it happens."""

    run_id: str
    attempt_number: int
    level: str
    message: str
    attributes: dict[str, Any]
    timestamp: float


class SpanRecord(msgspec.Struct, kw_only=True):
    """One finished OpenTelemetry span, as the span store keeps it (ids in lowercase hex)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    run_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]


class Spans(msgspec.Struct, tag="spans", kw_only=True):
    """Spans a worker process finished, for its supervisor to store (`SLIPSTREAM_OTEL_EXPORTER=postgres`)."""

    spans: list[SpanRecord]


class Cancel(msgspec.Struct, tag="cancel", kw_only=True):
    """The run being executed was canceled: signal it, call on_cancel, then stop it."""

    run_id: str


class Outcome(msgspec.Struct, tag="outcome", kw_only=True):
    """How an attempt ended. `retry_delay_ms` None means: do not retry."""

    run_id: str
    attempt_number: int
    ok: bool
    output_json: str | None = None
    error_json: str | None = None
    retry_delay_ms: int | None = None
    # A failure that is not FAILED (TIMED_OUT when max_duration ran out, CANCELED).
    final_status: str | None = None
    # Set instead of a result when the attempt suspended at a waitpoint.
    suspend: WaitRequest | None = None
    # The process must be replaced: sync task code that was stopped may still be running.
    replace_process: bool = False


Message = Ready | LoadFailed | Execute | Cancel | LogLine | Spans | Outcome

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)
_HEADER = struct.Struct(">I")


def frame(message: Message) -> bytes:
    """Length-prefixed bytes of a message."""
    body = _encoder.encode(message)
    return _HEADER.pack(len(body)) + body


async def read(reader: asyncio.StreamReader) -> Message | None:
    """Read one message (supervisor side); None when the worker process has gone."""
    try:
        header = await reader.readexactly(_HEADER.size)
        body = await reader.readexactly(_HEADER.unpack(header)[0])
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message: Message = _decoder.decode(body)
    return message
