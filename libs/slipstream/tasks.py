"""Triggering tasks by id (`await tasks.trigger("hello-world", {...})`), and global hooks
(`tasks.on_success(fn)`, `tasks.middleware("db", fn)`, ...) that apply to every task."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from slipstream._context import TaskRunResult
from slipstream._hooks import (
    catch_error,
    cleanup,
    init,
    middleware,
    on_cancel,
    on_complete,
    on_failure,
    on_resume,
    on_start,
    on_start_attempt,
    on_success,
    on_wait,
)
from slipstream._task import RunHandle, trigger_and_wait_task, trigger_options, trigger_task

__all__ = [
    "catch_error",
    "cleanup",
    "init",
    "middleware",
    "on_cancel",
    "on_complete",
    "on_failure",
    "on_resume",
    "on_start",
    "on_start_attempt",
    "on_success",
    "on_wait",
    "trigger",
    "trigger_and_wait",
]


async def trigger(
    task_id: str,
    payload: Any = None,
    *,
    queue: str | None = None,
    concurrency_key: str | None = None,
    delay: str | datetime | None = None,
    tags: str | list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    max_attempts: int | None = None,
    priority: int | None = None,
    max_duration: int | None = None,
    machine: str | None = None,
    ttl: str | int | None = None,
) -> RunHandle:
    """Start a run of the task `task_id` (no client-side validation) and return its handle."""
    options = trigger_options(
        queue=queue,
        concurrency_key=concurrency_key,
        delay=delay,
        tags=tags,
        metadata=metadata,
        max_attempts=max_attempts,
        priority=priority,
        max_duration=max_duration,
        machine=machine,
        ttl=ttl,
    )
    return await trigger_task(task_id, payload, options)


async def trigger_and_wait(
    task_id: str,
    payload: Any = None,
    *,
    queue: str | None = None,
    concurrency_key: str | None = None,
    tags: str | list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    max_attempts: int | None = None,
    priority: int | None = None,
    max_duration: int | None = None,
    machine: str | None = None,
    ttl: str | int | None = None,
) -> TaskRunResult:
    """Inside a task: run `task_id` as a child and wait for its result without holding a slot."""
    options = trigger_options(
        queue=queue, concurrency_key=concurrency_key, tags=tags, metadata=metadata,
        max_attempts=max_attempts, priority=priority, max_duration=max_duration, machine=machine, ttl=ttl,
    )
    return await trigger_and_wait_task(task_id, payload, options)
