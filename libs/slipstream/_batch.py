"""Batch triggers: many runs in one request (`POST /api/v1/tasks/{id}/batch`, `/api/v1/tasks/batch`),
and inside a task, a batch the parent waits for (a BATCH waitpoint: the supervisor creates the
batch in the transaction that suspends the parent)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
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
from slipstream._context import BatchResult
from slipstream._task import BatchHandle, BatchKwargs, RunHandle, trigger_options, with_parent
from slipstream.errors import BatchItemError

if TYPE_CHECKING:
    from slipstream._task import Task

MAX_ITEMS = 1000
_ITEM = '{"payload": ..., "options": {...}}'
_json = msgspec.json.Encoder()


class Item(msgspec.Struct, frozen=True):
    """A checked item: the task to run, its payload and its wire options."""

    task_identifier: str
    payload: Any
    options: TriggerOptions


def _listed(items: Iterable[Any], keys: frozenset[str], shape: str) -> list[Mapping[str, Any]]:
    """The items as a list of mappings with only `keys`; BatchItemError names a bad one."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise BatchItemError(f"a batch takes a list (or another iterable) of items like {shape}, "
                             f"not {type(items).__name__}")
    listed = list(items)
    if not listed:
        raise BatchItemError("a batch needs at least one item")
    if len(listed) > MAX_ITEMS:
        raise BatchItemError(f"a batch holds at most {MAX_ITEMS:,} items, got {len(listed):,}: trigger the rest"
                             " in another batch")
    for index, item in enumerate(listed):
        if not isinstance(item, Mapping):
            raise BatchItemError(f"items[{index}] must be a dict like {shape}, not {type(item).__name__}")
        unknown = set(item) - keys
        if unknown:
            raise BatchItemError(f"items[{index}] has unknown key(s) {', '.join(sorted(map(str, unknown)))};"
                                 f" an item is like {shape}")
    return listed


def _options(index: int, item: Mapping[str, Any]) -> TriggerOptions:
    options = item.get("options") or {}
    if not isinstance(options, Mapping):
        raise BatchItemError(f"items[{index}].options must be a dict of trigger options, not {type(options).__name__}")
    try:
        return with_parent(trigger_options(**options))
    except TypeError as exc:
        raise BatchItemError(f"items[{index}].options: {exc}") from None


def items_of_task(task: Task[Any, Any] | str, items: Iterable[Any]) -> list[Item]:
    """Items of one task (a Task validates each payload with its schema; a task id does not)."""
    checked = []
    for index, item in enumerate(_listed(items, frozenset({"payload", "options"}), _ITEM)):
        if not isinstance(task, str) and task.parse is not None:
            task.parse(item.get("payload"))
        checked.append(Item(task if isinstance(task, str) else task.id, item.get("payload"), _options(index, item)))
    return checked


def items_of_tasks(items: Iterable[Any], *, by_task: bool) -> list[Item]:
    """Items naming their task: by id ("id") or as a Task ("task", payloads validated by schema tasks)."""
    from slipstream._task import Task

    key = "task" if by_task else "id"
    shape = ('{"task": my_task, "payload": ..., "options": {...}}' if by_task
             else '{"id": "task-id", "payload": ..., "options": {...}}')
    checked = []
    for index, item in enumerate(_listed(items, frozenset({key, "payload", "options"}), shape)):
        target = item.get(key)
        if by_task:
            if not isinstance(target, Task):
                raise BatchItemError(f"items[{index}].task must be a task (a @task function), not {target!r}")
            if target.parse is not None:
                target.parse(item.get("payload"))
            task_id = target.id
        else:
            if not isinstance(target, str) or not target:
                raise BatchItemError(f"items[{index}].id must be a task id, not {target!r}")
            task_id = target
        checked.append(Item(task_id, item.get("payload"), _options(index, item)))
    return checked


def _batch_options(options: BatchKwargs) -> BatchOptions | None:
    unknown = set(options) - set(BatchKwargs.__annotations__)
    if unknown:
        raise TypeError(f"unknown batch option(s) {', '.join(sorted(unknown))}; known: "
                        + ", ".join(BatchKwargs.__annotations__))
    return BatchOptions(**options) if options else None


async def send(items: list[Item], options: BatchKwargs, *, task_id: str | None) -> BatchHandle:
    """Trigger the batch over HTTP: of one task (`task_id`), or of the tasks each item names."""
    batch_options = _batch_options(options)
    body: BatchTriggerRequest | BatchTriggerTasksRequest
    if task_id is not None:
        path = f"/api/v1/tasks/{task_id}/batch"
        body = BatchTriggerRequest(items=[WireItem(payload=i.payload, options=i.options) for i in items],
                                   options=batch_options)
    else:
        path = "/api/v1/tasks/batch"
        body = BatchTriggerTasksRequest(items=[BatchTaskItem(task=i.task_identifier, payload=i.payload,
                                                             options=i.options) for i in items],
                                        options=batch_options)
    response = await _client.request("POST", path, BatchTriggerResponse, body, request_id=uuid.uuid4().hex)
    return BatchHandle(response.id, [RunHandle(r.id, r.is_cached, r.task_identifier) for r in response.runs],
                       response.is_cached)


async def wait_for(items: list[Item]) -> BatchResult:
    """Inside a task: trigger the batch and suspend until every run is final (the slot is freed)."""
    from slipstream._waits import waitpoint

    entry = await waitpoint("BATCH", items_json=_json.encode(items).decode())
    return msgspec.json.decode(entry.result_json or "{}", type=BatchResult)
