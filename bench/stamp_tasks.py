"""Tasks of the fast-path benchmarks: each returns `time.time()` taken as its first line."""

from __future__ import annotations

import time

from slipstream import TaskContext, task


def _stamp(task_id: str) -> None:
    @task(id=task_id)
    async def run(payload: dict, ctx: TaskContext) -> float:
        return time.time()


for _id in ("stamp-warmup", "stamp-latency", "stamp-live", "stamp-drain", "stamp-concurrent", "stamp-memory"):
    _stamp(_id)
