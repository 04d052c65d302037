"""Tasks on concurrency-limited queues."""

from __future__ import annotations

import asyncio
from typing import Any

from slipstream import TaskContext, queue, task

one_at_a_time = queue("one-at-a-time", concurrency_limit=1)
queue("declared-but-unused", concurrency_limit=3)


@task(id="limited", queue={"concurrency_limit": 1})
async def limited(payload: Any, ctx: TaskContext) -> None:
    await asyncio.sleep(0.3)


@task(id="shared-a", queue=one_at_a_time)
async def shared_a(payload: Any, ctx: TaskContext) -> None:
    await asyncio.sleep(0.3)


@task(id="shared-b", queue={"name": "one-at-a-time"})
async def shared_b(payload: Any, ctx: TaskContext) -> None:
    await asyncio.sleep(0.3)


@task(id="keyed", queue={"concurrency_limit": 1})
async def keyed(payload: Any, ctx: TaskContext) -> None:
    await asyncio.sleep(0.5)


@task(id="pausable")
async def pausable(payload: Any, ctx: TaskContext) -> str:
    return "ran"


@task(id="capped", queue={"concurrency_limit": 2, "per_key_limit": 1})
async def capped(payload: Any, ctx: TaskContext) -> None:
    await asyncio.sleep(0.3)


@task(id="rated", queue={"rate_limit": {"limit": 3, "period": "2s"}})
async def rated(payload: Any, ctx: TaskContext) -> None:
    return None


@task(id="rated-per-key", queue={"per_key_rate_limit": {"limit": 1, "period": "1s"}})
async def rated_per_key(payload: Any, ctx: TaskContext) -> None:
    return None


@task(id="solo-parent", queue={"name": "one-at-a-time"})
async def solo_parent(payload: Any, ctx: TaskContext) -> list[Any]:
    # Its children run on the same queue, whose limit is 1: the parent's wait gives its slot up.
    results = [await shared_a.trigger_and_wait({"n": n}) for n in range(2)]
    return [r.id for r in results if r.ok]


@task(id="fan-child", queue={"concurrency_limit": 2})
async def fan_child(payload: dict, ctx: TaskContext) -> int:
    return int(payload["i"]) * 2


@task(id="fan-parent")
async def fan_parent(payload: dict, ctx: TaskContext) -> dict:
    n = payload["n"]
    result = await fan_child.batch_trigger_and_wait([{"payload": {"i": i}} for i in range(n)])
    outputs = [r.unwrap() for r in result.runs]
    return {"ordered": outputs == [2 * i for i in range(n)], "count": len(outputs), "batch": result.id}


# A parent and its children on one queue of limit 1: the waiting parent gives its slot up.
own_queue = queue("fan-own", concurrency_limit=1)


@task(id="fan-own-child", queue=own_queue)
async def fan_own_child(payload: Any, ctx: TaskContext) -> Any:
    return payload


@task(id="fan-own-parent", queue=own_queue)
async def fan_own_parent(payload: Any, ctx: TaskContext) -> list[Any]:
    result = await fan_own_child.batch_trigger_and_wait([{"payload": i} for i in range(5)])
    return [r.output for r in result.runs]
