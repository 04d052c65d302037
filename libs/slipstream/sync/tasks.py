"""`slipstream.tasks`, not awaited: trigger a task by its id."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Unpack

from slipstream import tasks as _tasks
from slipstream._bridge import bridge
from slipstream._task import BatchHandle, BatchKwargs, RunHandle, TriggerKwargs

__all__ = ["batch_trigger", "trigger"]


def trigger(task_id: str, payload: Any = None, **options: Unpack[TriggerKwargs]) -> RunHandle[Any]:
    """Start a run of the task `task_id` and return its handle (see `slipstream.tasks.trigger`)."""
    return bridge.call(_tasks.trigger, task_id, payload, **options)


def batch_trigger(task_id: str, items: Iterable[dict[str, Any]], **options: Unpack[BatchKwargs]) -> BatchHandle:
    """Start one run of `task_id` per item `{"payload": ..., "options": {...}}`; the batch's handle."""
    return bridge.call(_tasks.batch_trigger, task_id, items, **options)
