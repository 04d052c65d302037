"""Every error the platform records on a run or attempt, as the JSON stored in `error`.

A run's `error` is `{"name", "message"}` (and `stackTrace` for errors raised by task code,
which the worker process records itself). The names are stable: users match on them.

    TaskProcessCrashedError    the worker process died during the attempt
    MaxDurationExceededError   the run used up its max_duration (the watchdog's kill)
    TaskRunOutOfMemoryError    the worker process went over its machine's memory
    SystemFailureError         the supervisor failed while running the attempt
    TriggerError               trigger_and_wait could not create its child run
    TaskRunStalledError        the worker stopped sending heartbeats mid-attempt
    TaskRunLostError           the supervisor could not record the attempt's end
    TaskRunExpiredError        the run did not start within its ttl (built in SQL, with the ttl)
    TaskRunCanceledError       the run was canceled while its attempt ran
    TaskNotFoundError          the worker's module does not define the task
"""

from __future__ import annotations

import msgspec

_encoder = msgspec.json.Encoder()

EXPIRED = "TaskRunExpiredError"


class RunError(msgspec.Struct, frozen=True):
    """A platform error as stored."""

    name: str
    message: str


def _json(name: str, message: str) -> str:
    return _encoder.encode(RunError(name, message)).decode()


def process_crashed(code: int | None) -> str:
    signal_note = f" (killed by signal {-code})" if code is not None and code < 0 else ""
    return _json("TaskProcessCrashedError",
                 f"the worker process running this attempt exited with code {code}{signal_note}")


def max_duration_exceeded(max_duration: int | None) -> str:
    return _json("MaxDurationExceededError", f"the run exceeded its max_duration of {max_duration}s")


def out_of_memory(used: int, limit: int, machine: str) -> str:
    return _json("TaskRunOutOfMemoryError",
                 f"the worker process used {used // 2**20} MB, over the {limit // 2**20} MB of machine {machine!r}")


def system_failure(exc: BaseException) -> str:
    return _json("SystemFailureError", f"the supervisor failed: {exc!r}")


def trigger_failed(task_id: str | None, reason: str) -> str:
    """A child run (task_id) or a batch of them (None) that trigger_and_wait could not create."""
    where = f"trigger_and_wait({task_id!r})" if task_id is not None else "batch_trigger_and_wait"
    return _json("TriggerError", f"{where}: {reason}")


STALLED = _json("TaskRunStalledError", "the worker running this attempt stopped sending heartbeats"
                " (it was killed or lost its connection)")
LOST = _json("TaskRunLostError", "the supervisor running this attempt could not record how it ended;"
             " the run is retried if attempts are left")
CANCELED = _json("TaskRunCanceledError", "the run was canceled")


def task_not_found(task_id: str) -> str:
    return _json("TaskNotFoundError", f"task {task_id!r} is not defined in this worker's module")
