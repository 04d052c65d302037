"""Batches of runs of several tasks, and reading a batch back.

    from slipstream import batch

    handle = await batch.trigger([
        {"id": "send-email", "payload": {"to": "ada@example.com"}},
        {"id": "resize-image", "payload": {"url": "..."}, "options": {"tags": ["user:1"]}},
    ])
    handle = await batch.trigger_by_task([{"task": send_email, "payload": {"to": "..."}}])
    b = await batch.retrieve(handle.batch_id)  # b.status: PROCESSING, COMPLETED, ...

Up to 1,000 items per call, accepted or refused whole. For one task, use
`my_task.batch_trigger([...])` or `tasks.batch_trigger("task-id", [...])`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Unpack

from slipstream_proto import Batch

from slipstream import _client
from slipstream._batch import batch_of_tasks
from slipstream._task import BatchHandle, BatchKwargs

__all__ = ["Batch", "BatchHandle", "retrieve", "trigger", "trigger_by_task"]


async def trigger(items: Iterable[dict[str, Any]], **options: Unpack[BatchKwargs]) -> BatchHandle:
    """Start one run per item `{"id": "task-id", "payload": ..., "options": {...}}`; return the
    batch's handle, whose `runs` (each with its `task_identifier`) are in the order of the items."""
    return await batch_of_tasks(items, options, by_task=False)


async def trigger_by_task(items: Iterable[dict[str, Any]], **options: Unpack[BatchKwargs]) -> BatchHandle:
    """Start one run per item `{"task": my_task, "payload": ..., "options": {...}}`; each payload
    is validated first when its task is a schema task."""
    return await batch_of_tasks(items, options, by_task=True)


async def retrieve(batch_id: str) -> Batch:
    """The batch with its status and its runs' ids (NotFoundError if there is no such batch)."""
    return await _client.request("GET", f"/api/v2/batches/{batch_id}", Batch)
