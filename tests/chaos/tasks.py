"""Tasks of the chaos suite. Each execution that finishes appends one JSON line to the file named
by SLIPSTREAM_TEST_RECORD (one `os.write` on an O_APPEND descriptor, so the lines of many worker
processes never mix), with CLOCK_MONOTONIC times: the suite finds from them the most runs that ever
executed at once per queue and per concurrency key."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from slipstream import TaskContext, queue, schedules, task, wait

KEYED = queue("chaos-keyed", concurrency_limit=2, per_key_limit=1)


def record(ctx: TaskContext, start: int, **more: Any) -> None:
    entry = {"run": ctx.run.id, "attempt": ctx.run.attempt.number, "task": ctx.task.id,
             "start": start, "end": time.monotonic_ns(), **more}
    fd = os.open(os.environ["SLIPSTREAM_TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


@task(id="chaos-flaky", retry={"max_attempts": 4, "min_timeout_ms": 20, "max_timeout_ms": 100})
async def flaky(payload: dict[str, Any], ctx: TaskContext) -> int:
    """Fails its first attempt when asked to; returns its n."""
    start = time.monotonic_ns()
    await asyncio.sleep(payload.get("ms", 20) / 1000)
    if payload.get("fail") and ctx.run.attempt.number == 1:
        raise RuntimeError("failing the first attempt on purpose")
    record(ctx, start)
    return int(payload["n"])


@task(id="chaos-keyed", queue=KEYED, retry={"max_attempts": 4, "min_timeout_ms": 20, "max_timeout_ms": 100})
async def keyed(payload: dict[str, Any], ctx: TaskContext) -> int:
    """Holds its queue slot (2 at once, 1 per tenant) for a while."""
    start = time.monotonic_ns()
    await asyncio.sleep(payload.get("ms", 60) / 1000)
    record(ctx, start, queue="chaos-keyed", key=payload["key"])
    return int(payload["n"])


@task(id="chaos-leaf")
async def leaf(payload: dict[str, Any], ctx: TaskContext) -> int:
    return int(payload["n"])


@task(id="chaos-parent", retry={"max_attempts": 4, "min_timeout_ms": 20, "max_timeout_ms": 100})
async def parent(payload: dict[str, Any], ctx: TaskContext) -> int:
    """A child waited for, a batch of two waited for, and a timer: n + 2n + 3n (+ nothing) = 6n."""
    n = int(payload["n"])
    one = await leaf.trigger_and_wait({"n": n})
    two = await leaf.batch_trigger_and_wait([{"payload": {"n": 2 * n}}, {"payload": {"n": 3 * n}}])
    await wait.for_(seconds=0.3)
    return int(one.unwrap()) + sum(int(r.unwrap()) for r in two.runs)


@task(id="chaos-sleep")
async def sleep(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Runs until it is canceled."""
    await asyncio.sleep(payload.get("seconds", 120))


@task(id="chaos-probe")
async def probe(payload: Any, ctx: TaskContext) -> str:
    """Triggered after each fault: the time until it completes is the time to recover."""
    return "ok"


@schedules.task(id="chaos-scheduled")
async def scheduled(payload: Any, ctx: TaskContext) -> str:
    return "ticked"
