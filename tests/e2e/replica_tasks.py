"""Tasks for test_queue_replicas: each execution records its interval, so the test can find
the most runs that ever executed at once, per queue and per concurrency key.

Every execution appends one JSON line to the file named by SLIPSTREAM_TEST_RECORD, with one
`os.write` on an O_APPEND descriptor, so lines written by many worker processes never mix.
Times come from CLOCK_MONOTONIC (`time.monotonic_ns`), which is one clock for every process
on a Linux machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from slipstream import TaskContext, queue, task

LIMITED = queue("replica-limited", concurrency_limit=3)
KEYED = queue("replica-keyed", concurrency_limit=3, per_key_limit=1)


def record(path: str, entry: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


async def hold(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Hold the slot for payload["ms"] milliseconds, then record when it was held."""
    start = time.monotonic_ns()
    await asyncio.sleep(payload["ms"] / 1000)
    end = time.monotonic_ns()
    record(os.environ["SLIPSTREAM_TEST_RECORD"], {
        "run": ctx.run.id, "attempt": ctx.run.attempt.number, "task": ctx.task.id,
        "queue": ctx.queue.name if ctx.queue else None, "key": payload.get("key"),
        "start": start, "end": end, "pid": os.getpid(),
    })
    return {"n": payload["n"]}


@task(id="replica-limited", queue=LIMITED)
async def limited(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return await hold(payload, ctx)


@task(id="replica-keyed", queue=KEYED)
async def keyed(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return await hold(payload, ctx)
