"""Batches of runs of several tasks, and reading a batch back.

    from slipstream import batch

    handle = await batch.trigger([
        {"id": "send-email", "payload": {"to": "ada@example.com"}},
        {"id": "resize-image", "payload": {"url": "..."}, "options": {"tags": ["user:1"]}},
    ])
    handle = await batch.trigger_by_task([{"task": send_email, "payload": {"to": "..."}}])
    b = await batch.retrieve(handle.batch_id)  # b.status: PROCESSING, COMPLETED, ...

Up to 1,000 items go in one request, accepted or refused whole; more (from any iterable, or an
async iterable) go as several requests into one batch. For one task, use
`my_task.batch_trigger([...])` or `tasks.batch_trigger("task-id", [...])`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any, Unpack

import msgspec
from slipstream_proto import Batch

from slipstream import _client
from slipstream._batch import Item, of_tasks, send, wait_for
from slipstream._context import BatchResult
from slipstream._task import BatchHandle, BatchKwargs, Task

Items = Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]]

__all__ = ["Batch", "BatchHandle", "BatchResult", "retrieve", "trigger", "trigger_and_wait", "trigger_by_task",
           "trigger_by_task_and_wait"]


async def trigger(items: Items, **options: Unpack[BatchKwargs]) -> BatchHandle:
    """Start one run per item `{"id": "task-id", "payload": ..., "options": {...}}`; return the
    batch's handle, whose `runs` (each with its `task_identifier`) are in the order of the items.
    More than 1,000 items (from any iterable, or an async iterable) go in several requests."""
    return await send(items, of_tasks(items, by_task=False), options, task_id=None)


async def trigger_by_task(items: Items, **options: Unpack[BatchKwargs]) -> BatchHandle:
    """Start one run per item `{"task": my_task, "payload": ..., "options": {...}}`; each payload
    is validated first when its task is a schema task."""
    return await send(items, of_tasks(items, by_task=True), options, task_id=None)


async def trigger_and_wait(items: Items) -> BatchResult[Any]:
    """Inside a task: `trigger`, then wait without holding a slot until every run is final
    (any number of items: more than 1,000 are streamed in chunks). The result's `runs` are in
    the order of the items, each with `ok`, `id`, `task_identifier` and `output` or `error`."""
    return await wait_for(items, of_tasks(items, by_task=False))


async def trigger_by_task_and_wait(items: Items) -> BatchResult[Any]:
    """Inside a task: `trigger_by_task`, then wait until every run is final (see `trigger_and_wait`).
    Each run's output is decoded into its task's return type, as `Task.trigger_and_wait` does."""
    check = of_tasks(items, by_task=True)
    by_id: dict[str, Task[Any, Any]] = {}

    def noting(index: int, raw: object) -> Item:
        item = check(index, raw)  # raw is a mapping with a Task under "task" (else BatchItemError)
        by_id[item.task_identifier] = raw["task"]  # type: ignore[index]
        return item

    result = await wait_for(items, noting)
    return msgspec.structs.replace(result, runs=[
        by_id[r.task_identifier].typed_result(r) if r.task_identifier in by_id else r for r in result.runs])


async def retrieve(batch_id: str) -> Batch:
    """The batch with its status and its runs' ids (NotFoundError if there is no such batch)."""
    return await _client.request("GET", f"/api/v2/batches/{batch_id}", Batch)
