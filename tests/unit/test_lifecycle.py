"""How an attempt ends: the supervisor's observations -> the run's next status and error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from slipstream_core import ipc
from slipstream_core.definitions import QueueDefinition, RetryPolicy, TaskDefinition
from slipstream_platform import lifecycle
from slipstream_platform.lifecycle import Observed, end_of_attempt
from slipstream_platform.store.attempts import StartedAttempt
from slipstream_proto.machines import MACHINE_PRESETS

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TASK = TaskDefinition(id="t", queue=QueueDefinition(name="task/t"), retry=RetryPolicy(max_attempts=3))


def started(**fields: object) -> StartedAttempt:
    values: dict[str, object] = dict(
        run_id="run_1", environment_id="env_1", status="EXECUTING", updated_at=NOW, task_identifier="t",
        payload_json='{"a": 1}', attempt_id="attempt_1", attempt_number=1, max_attempts=3, max_duration=None,
        executed_seconds=0.0, machine="small-1x", queue="task/t", tags=["x"], created_at=NOW, traceparent=None,
        root_run_id=None, depth=0, resuming=False,
    )
    values.update(fields)
    return StartedAttempt(**values)  # type: ignore[arg-type]


def outcome(**fields: object) -> ipc.Outcome:
    return ipc.Outcome(run_id="run_1", attempt_number=1, **fields)  # type: ignore[arg-type]


def error_of(end: object) -> dict[str, str]:
    return json.loads(end.error_json)  # type: ignore[attr-defined, no-any-return]


def test_success_completes_with_the_output() -> None:
    end = end_of_attempt(started(), TASK, Observed(outcome=outcome(ok=True, output_json='{"n": 2}')), NOW)
    assert (end.status, end.attempt_status, end.output_json, end.error_json) == ("COMPLETED", "COMPLETED",
                                                                                '{"n": 2}', None)
    # A task that returns nothing completes with null.
    assert end_of_attempt(started(), TASK, Observed(outcome=outcome(ok=True)), NOW).output_json == "null"


def test_an_error_with_a_back_off_is_retried_then() -> None:
    seen = Observed(outcome=outcome(ok=False, error_json='{"name": "E"}', retry_delay_ms=1500))
    end = end_of_attempt(started(), TASK, seen, NOW)
    assert (end.status, end.attempt_status) == ("QUEUED", "FAILED")
    assert end.retry_at == NOW + timedelta(milliseconds=1500) and end.error_json == '{"name": "E"}'


@pytest.mark.parametrize(("final", "attempt"), [(None, "FAILED"), ("TIMED_OUT", "FAILED"), ("CANCELED", "FAILED"),
                                                ("CRASHED", "CRASHED")])
def test_an_error_without_a_back_off_is_final(final: str | None, attempt: str) -> None:
    end = end_of_attempt(started(), TASK, Observed(outcome=outcome(ok=False, final_status=final)), NOW)
    assert (end.status, end.attempt_status, end.retry_at) == (final or "FAILED", attempt, None)
    assert end.error_json == "{}"


def test_a_dead_process_crashes_the_run_with_its_exit_code() -> None:
    end = end_of_attempt(started(), TASK, Observed(exit_code=-9), NOW)
    assert (end.status, end.attempt_status) == ("CRASHED", "CRASHED")
    assert error_of(end) == {"name": "TaskProcessCrashedError",
                             "message": "the worker process running this attempt exited with code -9"
                                        " (killed by signal 9)"}


def test_the_watchdog_times_the_run_out() -> None:
    end = end_of_attempt(started(max_duration=30), TASK, Observed(watchdog_fired=True), NOW)
    assert (end.status, end.attempt_status) == ("TIMED_OUT", "FAILED")
    assert error_of(end)["name"] == "MaxDurationExceededError" and "30s" in error_of(end)["message"]


def test_out_of_memory_crashes_unless_the_task_names_a_bigger_machine() -> None:
    used = MACHINE_PRESETS["small-1x"].memory_bytes + 2**20
    end = end_of_attempt(started(), TASK, Observed(memory_used=used, outcome=outcome(ok=True)), NOW)
    assert (end.status, end.attempt_status, end.retry_machine) == ("CRASHED", "CRASHED", None)
    assert error_of(end)["name"] == "TaskRunOutOfMemoryError" and "'small-1x'" in error_of(end)["message"]
    bigger = TaskDefinition(id="t", queue=QueueDefinition(name="task/t"),
                            retry=RetryPolicy(max_attempts=3, out_of_memory_machine="large-1x"))
    retried = end_of_attempt(started(), bigger, Observed(memory_used=used), NOW)
    assert (retried.status, retried.attempt_status, retried.retry_machine, retried.retry_at) == (
        "QUEUED", "CRASHED", "large-1x", NOW)
    # Not past the last attempt, and not when it already runs on that machine.
    assert end_of_attempt(started(attempt_number=3), bigger, Observed(memory_used=used), NOW).status == "CRASHED"
    assert end_of_attempt(started(machine="large-1x"), bigger, Observed(memory_used=used), NOW).status == "CRASHED"


def test_memory_wins_over_the_watchdog_and_the_watchdog_over_a_crash() -> None:
    both = Observed(memory_used=10**12, watchdog_fired=True, exit_code=-9)
    assert error_of(end_of_attempt(started(), TASK, both, NOW))["name"] == "TaskRunOutOfMemoryError"
    assert end_of_attempt(started(), TASK, Observed(watchdog_fired=True, exit_code=-9), NOW).status == "TIMED_OUT"


def test_platform_failures_end_the_run() -> None:
    failed = lifecycle.system_failure(started(), RuntimeError("pool closed"))
    assert (failed.status, failed.attempt_status) == ("SYSTEM_FAILURE", "FAILED")
    assert error_of(failed) == {"name": "SystemFailureError",
                                "message": "the supervisor failed: RuntimeError('pool closed')"}
    rejected = lifecycle.trigger_failure(started(), "child", "task id 'x y' is not valid")
    assert (rejected.status, error_of(rejected)["name"]) == ("FAILED", "TriggerError")
    assert error_of(rejected)["message"] == "trigger_and_wait('child'): task id 'x y' is not valid"


def test_starts_take_the_tasks_defaults() -> None:
    task = TaskDefinition(id="t", queue=QueueDefinition(name="task/t"), retry=RetryPolicy(max_attempts=5),
                          max_duration=60, machine="medium-1x")
    request = lifecycle.start_request("run_1", task)
    assert (request.default_max_attempts, request.default_max_duration, request.default_machine) == (5, 60, "medium-1x")
    # A task this worker does not define gets one attempt (the process reports TaskNotFoundError).
    unknown = lifecycle.start_request("run_1", None)
    assert (unknown.default_max_attempts, unknown.default_max_duration) == (1, None)


def test_the_execute_message_carries_what_is_left_of_max_duration() -> None:
    message = lifecycle.execute_message(started(max_duration=10, executed_seconds=4.0), "PRODUCTION", [])
    assert message.timeout_seconds == pytest.approx(6.0)
    assert (message.payload_json, message.tags, message.environment_type) == ('{"a": 1}', ["x"], "PRODUCTION")
    assert lifecycle.execute_message(started(), "DEVELOPMENT", []).timeout_seconds is None
    assert lifecycle.needs_journal(started(resuming=True)) and lifecycle.needs_journal(started(attempt_number=2))
    assert not lifecycle.needs_journal(started())
