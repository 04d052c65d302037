"""Tasks of the batch benchmarks (bench/batches.py)."""

from __future__ import annotations

import time
from typing import Any

from slipstream import TaskContext, task, wait


@task(id="batch-noop")
async def batch_noop(payload: Any, ctx: TaskContext) -> None:
    return None


@task(id="batch-child")
async def batch_child(payload: Any, ctx: TaskContext) -> int:
    return int(payload)


@task(id="batch-parent")
async def batch_parent(payload: dict, ctx: TaskContext) -> dict:
    result = await batch_child.batch_trigger_and_wait([{"payload": i} for i in range(payload["n"])])
    return {"resumed_at": time.time(), "ok": all(r.ok for r in result.runs)}


@task(id="one-child")
async def one_child(payload: Any, ctx: TaskContext) -> None:
    return None


@task(id="one-parent")
async def one_parent(payload: Any, ctx: TaskContext) -> dict:
    child = await one_child.trigger_and_wait(None)
    return {"resumed_at": time.time(), "child": child.id}


@task(id="long-wait")
async def long_wait(payload: Any, ctx: TaskContext) -> None:
    await wait.for_(seconds=3600)
