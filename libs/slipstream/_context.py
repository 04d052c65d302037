"""What a running task sees as `ctx`."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

R = TypeVar("R")


class AttemptInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The current attempt: `ctx.run.attempt.number` counts from 1."""

    id: str
    number: int


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The run being executed."""

    id: str
    attempt: AttemptInfo
    created_at: datetime
    tags: list[str]
    max_attempts: int
    # The run's metadata when the attempt started (`slipstream.metadata` changes it while it runs).
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class TaskInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The task definition being run."""

    id: str


class EnvironmentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The environment the run belongs to."""

    id: str
    type: str


class QueueInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The queue the run was taken from."""

    name: str


class MachineInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The machine preset the attempt runs on: its memory is the process's limit."""

    name: str
    cpu: float
    memory_gb: float


class CancellationSignal:
    """`ctx.signal`: set when the run is canceled; usable from async and sync task code."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._waiters: asyncio.Event | None = None

    @property
    def is_cancelled(self) -> bool:
        """Whether the run was canceled."""
        return self._event.is_set()

    def cancel(self) -> None:
        """Mark the run canceled (the runtime calls this, on the attempt's event loop)."""
        self._event.set()
        if self._waiters is not None:
            self._waiters.set()

    async def wait(self) -> None:
        """Return once the run is canceled."""
        if self._event.is_set():
            return
        if self._waiters is None:
            self._waiters = asyncio.Event()
        await self._waiters.wait()

    def __repr__(self) -> str:
        return f"<CancellationSignal cancelled={self.is_cancelled}>"


class TaskContext(msgspec.Struct, frozen=True, kw_only=True):
    """The second argument of every task function."""

    run: RunInfo
    task: TaskInfo
    environment: EnvironmentInfo
    machine: MachineInfo | None = None
    queue: QueueInfo | None = None
    # What the deprecated `init` hook returned, if the task has one.
    init: Any = None
    signal: CancellationSignal = msgspec.field(default_factory=CancellationSignal)

    @property
    def attempt(self) -> AttemptInfo:
        """Shortcut for `ctx.run.attempt`."""
        return self.run.attempt


class TaskResult(msgspec.Struct, frozen=True, kw_only=True):
    """What `on_complete` receives as `result`: `ok` with `data`, or not with `error`."""

    ok: bool
    data: Any = None
    error: BaseException | None = None


class TaskRunResult(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """What `trigger_and_wait` returns (and each of a batch's `runs`): the child run's outcome,
    its `output` decoded into the task's declared return type (`TaskRunResult[R]`). A failed
    child never raises by itself: check `ok`, or call `unwrap()`."""

    id: str
    ok: bool
    status: str
    task_identifier: str | None = None
    output: R | None = None
    error: dict[str, Any] | None = None

    def unwrap(self) -> R:
        """The output, or SubtaskUnwrapError (with the child's run_id, task_id and cause) if the
        child run did not complete."""
        if self.ok:
            return self.output  # type: ignore[return-value]  # a task that returns None has output None
        from slipstream.errors import SubtaskUnwrapError

        message = (self.error or {}).get("message", self.status)
        raise SubtaskUnwrapError(f"child run {self.id} ({self.task_identifier}) ended {self.status}: {message}",
                                 run_id=self.id, task_id=self.task_identifier, cause=self.error)


class BatchResult(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """What the batch `..._and_wait` functions return: the batch's id and one result per item,
    in the order of the items."""

    id: str
    runs: list[TaskRunResult[R]]
