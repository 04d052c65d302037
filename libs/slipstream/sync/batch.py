"""`slipstream.batch`, not awaited: batches of several tasks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Unpack

from slipstream_proto import Batch

from slipstream import batch as _batch
from slipstream._bridge import bridge
from slipstream._task import BatchHandle, BatchKwargs

__all__ = ["retrieve", "trigger", "trigger_by_task"]


def trigger(items: Iterable[dict[str, Any]], **options: Unpack[BatchKwargs]) -> BatchHandle:
    """One run per item `{"id": "task-id", "payload": ..., "options": {...}}` (see `slipstream.batch.trigger`)."""
    return bridge.call(_batch.trigger, items, **options)


def trigger_by_task(items: Iterable[dict[str, Any]], **options: Unpack[BatchKwargs]) -> BatchHandle:
    """One run per item `{"task": my_task, "payload": ..., "options": {...}}`."""
    return bridge.call(_batch.trigger_by_task, items, **options)


def retrieve(batch_id: str) -> Batch:
    """The batch with its status and its runs' ids."""
    return bridge.call(_batch.retrieve, batch_id)
