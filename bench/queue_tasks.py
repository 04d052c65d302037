"""No-op tasks and the queues of the queue benchmarks (bench/queues.py).

Each case starts its own platform with `SLIPSTREAM_BENCH_QUEUES=<count>:<limit>`; this module
then declares the queues `bench-q-0` ... `bench-q-<count - 1>`, each with
`concurrency_limit=<limit>` (per concurrency key when runs have keys), so the environment
holds only that case's queues.
"""

from __future__ import annotations

import os

from slipstream import TaskContext, queue, task

_count, _limit = (int(part) for part in os.environ.get("SLIPSTREAM_BENCH_QUEUES", "1:1").split(":"))
QUEUES = [queue(f"bench-q-{i}", concurrency_limit=_limit) for i in range(_count)]


@task(id="queue-noop", queue=QUEUES[0])
async def queue_noop(payload: dict, ctx: TaskContext) -> None:
    return None


@task(id="queue-warmup")
async def queue_warmup(payload: dict, ctx: TaskContext) -> None:
    return None
