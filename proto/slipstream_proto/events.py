"""JetStream messages, the subjects they travel on, and the streams that hold them.

Every message is an `Event`: a frozen, keyword-only Struct with a stable `type` tag.
New fields get defaults; a field's type never changes; a tag is never reused.
Trace context travels in the NATS headers (W3C `traceparent`), not in the body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

SUBJECT_PREFIX = "slipstream"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", rename="camel"):
    """Base of every JetStream message."""


QueueReason = Literal["triggered", "released", "worker", "requeued", "delay", "rated", "ready"]

# The reasons after which a queued run may wait for time (a retry's back-off, a rate window):
# the queue-manager hears only these, and re-reads when the earliest such wait ends.
TIMED_REASONS: tuple[QueueReason, ...] = ("released", "requeued", "rated")


class QueueSignal(Event, tag="queue.signal", frozen=True, kw_only=True):
    """Wakes the supervisors of an environment: runs became ready, or capacity was freed.

    A signal carries no state: supervisors take from Postgres, so a lost or repeated signal
    is harmless (their periodic take covers a lost one). It travels on core NATS, on a subject
    that names its reason, and is kept nowhere. The queue-manager hears the `TIMED_REASONS`
    too, to learn when back-offs and rate windows end.
    """

    environment_id: str
    reason: QueueReason
    # The runs that became QUEUED, when a few did (at most `SIGNAL_RUNS`); empty when more did,
    # or when capacity was freed. A supervisor that has taken them all already needs no take.
    runs: tuple[str, ...] = ()
    # The worker whose supervisor sent it ("" from other services): a supervisor wakes itself
    # for what it announces, so it skips its own signals when they come back.
    sender: str = ""


# The most run ids one queue signal names (a batch's signal names none).
SIGNAL_RUNS = 8


class CancelRun(Event, tag="run.cancel", frozen=True, kw_only=True):
    """Tells the supervisor executing a run that it was canceled (sent on its dispatch subject)."""

    run_id: str
    worker_id: str


class RunUpdated(Event, tag="run.updated", frozen=True, kw_only=True):
    """A run's status changed (committed in Postgres before this is published)."""

    run_id: str
    environment_id: str
    status: str
    updated_at: datetime


AnyEvent = QueueSignal | CancelRun | RunUpdated

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    """Encode any event as JSON bytes."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> AnyEvent:
    """Decode JSON bytes into the event type named by their `type` tag."""
    event: AnyEvent = _decoder.decode(data)
    return event


def queue_signal_subject(environment_id: str, reason: QueueReason) -> str:
    """Subject of one environment's queue signals for one reason."""
    return f"{SUBJECT_PREFIX}.queue.{environment_id}.{reason}"


def queue_signals_of(environment_id: str) -> str:
    """Subject filter of every queue signal of one environment (what its supervisors hear)."""
    return f"{SUBJECT_PREFIX}.queue.{environment_id}.*"


def queue_signals_for(reason: QueueReason) -> str:
    """Subject filter of one reason's queue signals, in every environment."""
    return f"{SUBJECT_PREFIX}.queue.*.{reason}"


def dispatch_subject(worker_id: str) -> str:
    """Subject of the messages for one supervisor (worker): cancels of the runs it executes."""
    return f"{SUBJECT_PREFIX}.dispatch.{worker_id}"


def run_updated_subject(environment_id: str, run_id: str) -> str:
    """Subject of a run's status changes; realtime filters on these."""
    return f"{SUBJECT_PREFIX}.updates.{environment_id}.{run_id}"


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A JetStream stream the platform creates at start-up (idempotently)."""

    name: str
    subjects: tuple[str, ...]
    retention: Literal["limits", "workqueue"]
    max_age_seconds: float
    duplicate_window_seconds: float = 120.0
    # memory: hints that Postgres can rebuild, lost with a restart of nats-server.
    storage: Literal["file", "memory"] = "file"


DISPATCH_STREAM = StreamSpec(
    name="SLIPSTREAM_DISPATCH",
    subjects=(f"{SUBJECT_PREFIX}.dispatch.>",),
    retention="workqueue",
    max_age_seconds=3600,
)
STREAMS: tuple[StreamSpec, ...] = (DISPATCH_STREAM,)
# Streams of earlier versions, deleted where they exist. SLIPSTREAM_QUEUE held every queue
# signal for a minute (in memory) and fed the queue-manager's consumer; SLIPSTREAM_UPDATES
# held every status change for a minute, read by nobody (realtime subscribes to the runs it
# watches, live). Signals and status changes now travel on core NATS only.
RETIRED_STREAMS: tuple[str, ...] = ("SLIPSTREAM_QUEUE", "SLIPSTREAM_UPDATES")

# The queue group that all queue-manager replicas share: each timed signal reaches one.
QUEUE_MANAGER_GROUP = "queue-manager"
