"""The wire contract: one golden sample of every message, and the camelCase names on the wire.

Regenerate the golden file after an intended wire change with
`SLIPSTREAM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_wire.py`, and review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from slipstream_proto.events import CancelRun, QueueSignal, RunUpdated, decode_event, encode_event
from slipstream_proto.http import (
    ErrorBody,
    QueueOption,
    Run,
    RunAttempt,
    RunError,
    TriggerOptions,
    TriggerRequest,
    TriggerResponse,
)
from slipstream_proto.realtime import RealtimeError, RealtimeRun

GOLDEN = Path(__file__).parent / "golden" / "wire.json"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 0, 1, 500000, tzinfo=UTC)
T2 = datetime(2024, 5, 1, 12, 0, 3, tzinfo=UTC)

QUEUE_SIGNAL = QueueSignal(environment_id="env_1", reason="triggered", runs=("run_1",), sender="worker_1")
CANCEL_RUN = CancelRun(run_id="run_1", worker_id="wrk_1")
RUN_UPDATED = RunUpdated(run_id="run_1", environment_id="env_1", status="EXECUTING", updated_at=T1)
EVENTS = [QUEUE_SIGNAL, CANCEL_RUN, RUN_UPDATED]

ERROR = RunError(message="boom", name="ValueError", stack_trace="Traceback ...")
RUN = Run(
    id="run_1",
    task_identifier="hello-world",
    status="FAILED",
    created_at=T0,
    updated_at=T2,
    payload={"name": "Ada"},
    output=None,
    error=ERROR,
    started_at=T1,
    finished_at=T2,
    attempt_count=2,
    attempts=[
        RunAttempt(id="att_1", number=1, status="FAILED", created_at=T0, started_at=T0, completed_at=T1, error=ERROR),
        RunAttempt(id="att_2", number=2, status="FAILED", created_at=T1, started_at=T1, completed_at=T2, error=ERROR),
    ],
    tags=["user:1"],
    metadata={"step": 2},
    version="20240501.1",
    queue="task/hello-world",
    concurrency_key="user-1",
    idempotency_key="idem-1",
    duration_ms=1500,
    is_completed=True,
    is_failed=True,
)

SAMPLES: dict[str, Any] = {
    "QueueSignal": QUEUE_SIGNAL,
    "CancelRun": CANCEL_RUN,
    "RunUpdated": RUN_UPDATED,
    "TriggerRequest": TriggerRequest(
        payload={"name": "Ada"},
        context={"source": "test"},
        options=TriggerOptions(
            queue=QueueOption(name="emails"),
            concurrency_key="user-1",
            delay="1h30m",
            ttl="10m",
            idempotency_key="idem-1",
            idempotency_key_ttl="1d",
            priority=10,
            max_attempts=5,
            max_duration=300,
            machine="small-1x",
            metadata={"step": 1},
            tags=["user:1", "org:2"],
            debounce={"key": "user-1", "delay": "5s"},
            region="eu",
            lock_to_version="20240501.1",
        ),
    ),
    "TriggerResponse": TriggerResponse(id="run_1", is_cached=True),
    "Run": RUN,
    "ErrorBody": ErrorBody(error="Task 'nope' not found"),
    "RealtimeRun": RealtimeRun(run=RUN),
    "RealtimeError": RealtimeError(error="Run not found", status=404),
}


def _render() -> str:
    encoded = {name: json.loads(msgspec.json.encode(sample)) for name, sample in SAMPLES.items()}
    return json.dumps(encoded, indent=2) + "\n"


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    if os.environ.get("SLIPSTREAM_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(_render())
    loaded: dict[str, Any] = json.loads(GOLDEN.read_text())
    return loaded


def test_golden_file_has_exactly_the_samples(golden: dict[str, Any]) -> None:
    assert list(golden) == list(SAMPLES)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_message_matches_the_golden_file(name: str, golden: dict[str, Any]) -> None:
    encoded = json.loads(msgspec.json.encode(SAMPLES[name]))
    assert encoded == golden[name], (
        f"the wire form of {name} changed; if intended, run with SLIPSTREAM_UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_decode_event_round_trips(event: Any) -> None:
    decoded = decode_event(encode_event(event))
    assert type(decoded) is type(event)
    assert decoded == event


@pytest.mark.parametrize(
    ("event", "tag"),
    [(QUEUE_SIGNAL, "queue.signal"), (CANCEL_RUN, "run.cancel"), (RUN_UPDATED, "run.updated")],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_events_carry_their_type_tag(event: Any, tag: str) -> None:
    assert json.loads(encode_event(event))["type"] == tag


def test_a_queue_signal_without_runs_or_sender_still_decodes() -> None:
    # As sent before signals named their runs and sender: it names none, from no supervisor.
    event = decode_event(b'{"type":"queue.signal","environmentId":"env_1","reason":"released"}')
    assert event == QueueSignal(environment_id="env_1", reason="released", runs=(), sender="")


def test_decode_event_rejects_an_unknown_tag() -> None:
    with pytest.raises(msgspec.ValidationError, match="run.exploded"):
        decode_event(b'{"type": "run.exploded", "runId": "run_1"}')


def test_decode_event_reads_the_datetime_back() -> None:
    decoded = decode_event(encode_event(RUN_UPDATED))
    assert isinstance(decoded, RunUpdated)
    assert decoded.updated_at == T1


def test_events_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        CancelRun("run_1", "wrk_1")  # type: ignore[misc]


def test_events_are_frozen() -> None:
    with pytest.raises(AttributeError):
        QUEUE_SIGNAL.reason = "released"  # type: ignore[misc]


def test_wire_names_are_the_seed_camel_case() -> None:
    request = json.loads(msgspec.json.encode(SAMPLES["TriggerRequest"]))["options"]
    assert {
        "concurrencyKey",
        "idempotencyKey",
        "idempotencyKeyTTL",
        "maxAttempts",
        "maxDuration",
        "lockToVersion",
    } <= set(request)
    assert "idempotencyKeyTtl" not in request
    assert json.loads(msgspec.json.encode(SAMPLES["TriggerResponse"])) == {"id": "run_1", "isCached": True}
    run = json.loads(msgspec.json.encode(RUN))
    assert {
        "taskIdentifier",
        "attemptCount",
        "createdAt",
        "isCompleted",
        "isFailed",
        "isCancelled",
        "isCanceled",
    } <= set(run)
    assert run["error"]["stackTrace"] == "Traceback ..."
    assert run["attempts"][0]["completedAt"] == "2024-05-01T12:00:01.500000Z"
    assert json.loads(encode_event(CANCEL_RUN)) == {"type": "run.cancel", "runId": "run_1", "workerId": "wrk_1"}


def test_trigger_request_reads_the_seed_option_names() -> None:
    body = b"""{"payload": 1, "options": {"idempotencyKeyTTL": "1h", "concurrencyKey": "k", "maxAttempts": 2}}"""
    options = msgspec.json.decode(body, type=TriggerRequest).options
    assert options is not None
    assert (options.idempotency_key_ttl, options.concurrency_key, options.max_attempts) == ("1h", "k", 2)


@pytest.mark.parametrize(
    "body",
    [b'{"payload": 1, "bogus": true}', b'{"options": {"maxAttempt": 3}}', b'{"options": {"queue": {"nme": "q"}}}'],
)
def test_trigger_request_rejects_unknown_fields(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(body, type=TriggerRequest)


@pytest.mark.parametrize("delay", ["1h30m", "2024-05-01T13:00:00Z"])
def test_delay_accepts_a_string(delay: str) -> None:
    body = json.dumps({"options": {"delay": delay}}).encode()
    options = msgspec.json.decode(body, type=TriggerRequest).options
    assert options is not None
    assert options.delay == delay


def test_an_empty_trigger_request_is_valid() -> None:
    assert msgspec.json.decode(b"{}", type=TriggerRequest) == TriggerRequest()
