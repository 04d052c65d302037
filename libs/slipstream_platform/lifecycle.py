"""How an attempt ends: the rules that turn what the supervisor saw into the store's write.

The supervisor watches each attempt (its worker process's outcome, the process's exit, the
max_duration watchdog, the memory watch) and hands what it saw to `end_of_attempt`, which
decides the run's next status and error. Pure functions: no I/O, tested directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from slipstream_core import ipc, run_errors
from slipstream_core.definitions import TaskDefinition
from slipstream_proto.machines import DEFAULT_MACHINE, MACHINE_PRESETS

from slipstream_platform.store.attempts import AttemptEnd, StartedAttempt, StartRequest
from slipstream_platform.store.claims import TaskDefaults


class Observed(msgspec.Struct, frozen=True, kw_only=True):
    """What the supervisor saw of an attempt that did not suspend."""

    # The worker process's report; None if it never came (the process died or was killed).
    outcome: ipc.Outcome | None = None
    # The exit code of a process that died (negative: the signal that killed it).
    exit_code: int | None = None
    # The process ignored its max_duration past the watchdog's grace and was killed.
    watchdog_fired: bool = False
    # The process went over its machine's memory and was killed, having used this much.
    memory_used: int | None = None


def start_request(run_id: str, task: TaskDefinition | None) -> StartRequest:
    """How to start a run of `task` (None: a task this worker does not define)."""
    if task is None:
        return StartRequest(run_id=run_id, default_max_attempts=1, default_machine=DEFAULT_MACHINE)
    return StartRequest(run_id=run_id, default_max_attempts=task.retry.max_attempts,
                        default_max_duration=task.max_duration, default_machine=task.machine or DEFAULT_MACHINE)


def task_defaults(tasks: Iterable[TaskDefinition]) -> TaskDefaults:
    """What a take fills in for runs of `tasks` where their triggers left it open (as
    `start_request` does for one run)."""
    starts = [(task.id, start_request("", task)) for task in tasks]
    return TaskDefaults(task_ids=[task_id for task_id, _ in starts],
                        max_attempts=[s.default_max_attempts for _, s in starts],
                        max_durations=[s.default_max_duration for _, s in starts],
                        machines=[s.default_machine or DEFAULT_MACHINE for _, s in starts])


def preset_of(attempt: StartedAttempt) -> str:
    """The machine preset the attempt runs on."""
    return attempt.machine if attempt.machine in MACHINE_PRESETS else DEFAULT_MACHINE


def time_left(attempt: StartedAttempt) -> float | None:
    """Seconds of max_duration this attempt may still execute (None: no limit)."""
    if not attempt.max_duration:
        return None
    return max(0.001, attempt.max_duration - attempt.executed_seconds)


def end_of_attempt(attempt: StartedAttempt, task: TaskDefinition | None, seen: Observed, now: datetime) -> AttemptEnd:
    """The run's next status and error after an attempt that did not suspend.

    In order: over its memory (CRASHED, or retried on the bigger machine its task names);
    past its max_duration (TIMED_OUT); the process died (CRASHED); else what the process
    reported: COMPLETED, a retry at its back-off, or its final status.
    """
    def end(status: str, attempt_status: str, **fields: Any) -> AttemptEnd:
        return AttemptEnd(run_id=attempt.run_id, attempt_number=attempt.attempt_number, status=status,
                          attempt_status=attempt_status, **fields)

    if seen.memory_used is not None:
        machine = preset_of(attempt)
        error = run_errors.out_of_memory(seen.memory_used, MACHINE_PRESETS[machine].memory_bytes, machine)
        bigger = task.retry.out_of_memory_machine if task else None
        if bigger and bigger != machine and attempt.attempt_number < attempt.max_attempts:
            return end("QUEUED", "CRASHED", error_json=error, retry_at=now,
                              retry_machine=bigger)
        return end("CRASHED", "CRASHED", error_json=error)
    if seen.watchdog_fired:
        return end("TIMED_OUT", "FAILED",
                          error_json=run_errors.max_duration_exceeded(attempt.max_duration))
    outcome = seen.outcome
    if outcome is None:
        return end("CRASHED", "CRASHED",
                          error_json=run_errors.process_crashed(seen.exit_code))
    if outcome.ok:
        return end("COMPLETED", "COMPLETED",
                          output_json=outcome.output_json or "null")
    error = outcome.error_json or "{}"
    if outcome.retry_delay_ms is not None:
        return end("QUEUED", "FAILED", error_json=error,
                          retry_at=now + timedelta(milliseconds=outcome.retry_delay_ms))
    status = outcome.final_status or "FAILED"
    return end(status, "CRASHED" if status == "CRASHED" else "FAILED",
                      error_json=error)


def system_failure(attempt: StartedAttempt, exc: BaseException) -> AttemptEnd:
    """The supervisor itself failed while running the attempt: the run must still end."""
    return AttemptEnd(run_id=attempt.run_id, attempt_number=attempt.attempt_number, status="SYSTEM_FAILURE",
                      attempt_status="FAILED", error_json=run_errors.system_failure(exc))


def trigger_failure(attempt: StartedAttempt, task_id: str | None, reason: str) -> AttemptEnd:
    """trigger_and_wait could not create its child run: the parent fails (not retried)."""
    return AttemptEnd(run_id=attempt.run_id, attempt_number=attempt.attempt_number, status="FAILED",
                      attempt_status="FAILED", error_json=run_errors.trigger_failed(task_id, reason))


def execute_message(attempt: StartedAttempt, environment_type: str, journal: list[ipc.JournalEntry],
                    traceparent: str | None = None) -> ipc.Execute:
    """What the worker process is sent to run the attempt."""
    return ipc.Execute(
        run_id=attempt.run_id,
        task_id=attempt.task_identifier,
        payload_json=attempt.payload_json,
        attempt_id=attempt.attempt_id,
        attempt_number=attempt.attempt_number,
        max_attempts=attempt.max_attempts,
        created_at=attempt.created_at.isoformat(),
        tags=attempt.tags,
        environment_id=attempt.environment_id,
        environment_type=environment_type,
        timeout_seconds=time_left(attempt),
        max_duration=attempt.max_duration,
        machine=attempt.machine,
        queue=attempt.queue,
        journal=journal,
        resuming=attempt.resuming,
        metadata_json=attempt.metadata_json,
        traceparent=traceparent,
    )


def needs_journal(attempt: StartedAttempt) -> bool:
    """A resumed run replays its completed waitpoints; so does a retry (its waits may be done)."""
    return attempt.resuming or attempt.attempt_number > 1
