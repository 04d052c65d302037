"""Batch triggers: many runs in one request (`POST /api/v1/tasks/{id}/batch`, `/api/v1/tasks/batch`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from slipstream_proto import (
    BatchItem as WireItem,
)
from slipstream_proto import (
    BatchOptions,
    BatchTaskItem,
    BatchTriggerRequest,
    BatchTriggerResponse,
    BatchTriggerTasksRequest,
    TriggerOptions,
)

from slipstream import _client
from slipstream._task import BatchHandle, BatchKwargs, RunHandle, trigger_options, with_parent
from slipstream.errors import BatchItemError

if TYPE_CHECKING:
    from slipstream._task import Task

MAX_ITEMS = 1000


def _items(items: Iterable[Any], keys: frozenset[str], what: str) -> list[Mapping[str, Any]]:
    """The items as a list of mappings with only `keys`; BatchItemError names a bad one."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise BatchItemError(f"a batch takes a list (or another iterable) of items like {what}, "
                             f"not {type(items).__name__}")
    listed = list(items)
    if not listed:
        raise BatchItemError("a batch needs at least one item")
    if len(listed) > MAX_ITEMS:
        raise BatchItemError(f"a batch holds at most {MAX_ITEMS:,} items, got {len(listed):,}: trigger the rest"
                             " in another batch")
    for index, item in enumerate(listed):
        if not isinstance(item, Mapping):
            raise BatchItemError(f"items[{index}] must be a dict like {what}, not {type(item).__name__}")
        unknown = set(item) - keys
        if unknown:
            raise BatchItemError(f"items[{index}] has unknown key(s) {', '.join(sorted(map(str, unknown)))};"
                                 f" an item is like {what}")
    return listed


def _options(index: int, item: Mapping[str, Any]) -> TriggerOptions:
    options = item.get("options") or {}
    if not isinstance(options, Mapping):
        raise BatchItemError(f"items[{index}].options must be a dict of trigger options, not {type(options).__name__}")
    try:
        return with_parent(trigger_options(**options))
    except TypeError as exc:
        raise BatchItemError(f"items[{index}].options: {exc}") from None


def _batch_options(options: BatchKwargs) -> BatchOptions | None:
    unknown = set(options) - set(BatchKwargs.__annotations__)
    if unknown:
        raise TypeError(f"unknown batch option(s) {', '.join(sorted(unknown))}; known: "
                        + ", ".join(BatchKwargs.__annotations__))
    return BatchOptions(**options) if options else None


def _handle(response: BatchTriggerResponse) -> BatchHandle:
    return BatchHandle(response.id, [RunHandle(r.id, r.is_cached, r.task_identifier) for r in response.runs],
                       response.is_cached)


async def batch_of_task(task: Task[Any, Any], items: Iterable[Any], options: BatchKwargs) -> BatchHandle:
    """`Task.batch_trigger`: every item a run of `task` (its payload checked by a schema task)."""
    listed = _items(items, frozenset({"payload", "options"}), '{"payload": ..., "options": {...}}')
    wire = []
    for index, item in enumerate(listed):
        if task.parse is not None:
            task.parse(item.get("payload"))
        wire.append(WireItem(payload=item.get("payload"), options=_options(index, item)))
    return await _send(f"/api/v1/tasks/{task.id}/batch", BatchTriggerRequest(items=wire,
                                                                             options=_batch_options(options)))


async def batch_of_task_id(task_id: str, items: Iterable[Any], options: BatchKwargs) -> BatchHandle:
    """`tasks.batch_trigger("task-id", items)`: no client-side validation of the payloads."""
    listed = _items(items, frozenset({"payload", "options"}), '{"payload": ..., "options": {...}}')
    wire = [WireItem(payload=item.get("payload"), options=_options(i, item)) for i, item in enumerate(listed)]
    return await _send(f"/api/v1/tasks/{task_id}/batch", BatchTriggerRequest(items=wire,
                                                                             options=_batch_options(options)))


async def batch_of_tasks(items: Iterable[Any], options: BatchKwargs, *, by_task: bool) -> BatchHandle:
    """`batch.trigger` (items name a task id in "id") and `batch.trigger_by_task` (a Task in "task")."""
    key = "task" if by_task else "id"
    shape = ('{"task": my_task, "payload": ..., "options": {...}}' if by_task
             else '{"id": "task-id", "payload": ..., "options": {...}}')
    listed = _items(items, frozenset({key, "payload", "options"}), shape)
    wire = []
    for index, item in enumerate(listed):
        target = item.get(key)
        if by_task:
            from slipstream._task import Task

            if not isinstance(target, Task):
                raise BatchItemError(f"items[{index}].task must be a task (a @task function), not {target!r}")
            if target.parse is not None:
                target.parse(item.get("payload"))
            task_id = target.id
        else:
            if not isinstance(target, str) or not target:
                raise BatchItemError(f"items[{index}].id must be a task id, not {target!r}")
            task_id = target
        wire.append(BatchTaskItem(task=task_id, payload=item.get("payload"), options=_options(index, item)))
    return await _send("/api/v1/tasks/batch", BatchTriggerTasksRequest(items=wire, options=_batch_options(options)))


async def _send(path: str, body: BatchTriggerRequest | BatchTriggerTasksRequest) -> BatchHandle:
    response = await _client.request("POST", path, BatchTriggerResponse, body, request_id=uuid.uuid4().hex)
    return _handle(response)
