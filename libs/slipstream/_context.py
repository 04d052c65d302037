"""What a running task sees as `ctx`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


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


class TaskInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The task definition being run."""

    id: str


class EnvironmentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The environment the run belongs to."""

    id: str
    type: str


class TaskContext(msgspec.Struct, frozen=True, kw_only=True):
    """The second argument of every task function."""

    run: RunInfo
    task: TaskInfo
    environment: EnvironmentInfo
    # What the deprecated `init` hook returned, if the task has one.
    init: Any = None

    @property
    def attempt(self) -> AttemptInfo:
        """Shortcut for `ctx.run.attempt`."""
        return self.run.attempt


class TaskResult(msgspec.Struct, frozen=True, kw_only=True):
    """What `on_complete` receives as `result`: `ok` with `data`, or not with `error`."""

    ok: bool
    data: Any = None
    error: BaseException | None = None
