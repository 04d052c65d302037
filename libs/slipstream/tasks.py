"""Triggering tasks by id (`await tasks.trigger("hello-world", {...})`), and global hooks
(`tasks.on_success(fn)`, `tasks.middleware("db", fn)`, ...) that apply to every task."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any, Unpack

from slipstream._context import BatchResult, TaskRunResult
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
from slipstream._task import (
    BatchHandle,
    BatchKwargs,
    RunHandle,
    TriggerKwargs,
    trigger_and_wait_task,
    trigger_options,
    trigger_task,
)

__all__ = [
    "batch_trigger",
    "batch_trigger_and_wait",
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


async def trigger(task_id: str, payload: Any = None, **options: Unpack[TriggerKwargs]) -> RunHandle[Any]:
    """Start a run of the task `task_id` (no client-side validation) and return its handle."""
    return await trigger_task(task_id, payload, trigger_options(**options))


async def batch_trigger(task_id: str, items: Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]],
                        **options: Unpack[BatchKwargs]) -> BatchHandle:
    """Start one run of `task_id` per item `{"payload": ..., "options": {...}}`; return the
    batch's handle (see `Task.batch_trigger`: more than 1,000 items go in several requests)."""
    from slipstream._batch import of_task, send

    return await send(items, of_task(task_id, items), options, task_id=task_id)


async def batch_trigger_and_wait(task_id: str, items: Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]]
                                 ) -> BatchResult[Any]:
    """Inside a task: run one child of `task_id` per item and wait for them all (see
    `Task.batch_trigger_and_wait`)."""
    from slipstream._batch import of_task, wait_for

    return await wait_for(items, of_task(task_id, items))


async def trigger_and_wait(task_id: str, payload: Any = None, **options: Unpack[TriggerKwargs]) -> TaskRunResult[Any]:
    """Inside a task: run `task_id` as a child and wait for its result without holding a slot."""
    return await trigger_and_wait_task(task_id, payload, trigger_options(**options))
