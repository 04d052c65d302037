"""Tasks the end-to-end tests run in real worker processes."""

from __future__ import annotations

import asyncio
import os
import time

from slipstream import TaskContext, task, tasks


@task(id="echo")
async def echo(payload: dict, ctx: TaskContext) -> dict:
    return {"payload": payload, "run": ctx.run.id, "task": ctx.task.id, "attempt": ctx.run.attempt.number,
            "env": ctx.environment.type, "queue": ctx.queue.name if ctx.queue else None,
            "machine": ctx.machine.name if ctx.machine else None}


@task(id="echo-sync")
def echo_sync(payload: dict, ctx: TaskContext) -> dict:
    time.sleep(0.01)
    return {"sync": True, "payload": payload}


@task(id="flaky", retry={"max_attempts": 3, "min_timeout_ms": 10, "max_timeout_ms": 50, "factor": 2})
async def flaky(payload: dict, ctx: TaskContext) -> str:
    if ctx.run.attempt.number < payload["succeed_on"]:
        raise RuntimeError(f"attempt {ctx.run.attempt.number} failed on purpose")
    return f"ok on attempt {ctx.run.attempt.number}"


@task(id="always-fails", retry={"max_attempts": 3, "min_timeout_ms": 10, "max_timeout_ms": 20})
async def always_fails(payload: object, ctx: TaskContext) -> None:
    raise ValueError("this task always fails")


@task(id="bad-output")
async def bad_output(payload: object, ctx: TaskContext) -> object:
    return object()


@task(id="crash")
async def crash(payload: object, ctx: TaskContext) -> None:
    os._exit(3)


@task(id="sleepy", retry={"max_attempts": 5, "min_timeout_ms": 10, "max_timeout_ms": 50})
async def sleepy(payload: dict, ctx: TaskContext) -> dict:
    await asyncio.sleep(payload.get("seconds", 0.05))
    return {"slept": payload.get("seconds", 0.05), "n": payload.get("n")}


@task(id="parent")
async def parent(payload: dict, ctx: TaskContext) -> dict:
    child = await tasks.trigger("echo", {"from": ctx.run.id})
    return {"child": child.id}


@task(id="fan-out")
async def fan_out(payload: dict, ctx: TaskContext) -> dict:
    handle = await echo.batch_trigger([{"payload": {"i": i}} for i in range(payload["n"])])
    return {"batch": handle.batch_id, "children": [r.id for r in handle.runs]}


@task(id="sync-parent")
def sync_parent(payload: dict, ctx: TaskContext) -> dict:
    """A plain `def` task triggers a child with the sync client: the child is its child."""
    child = echo.trigger_sync({"from": "sync"})
    return {"child": child.id}
