"""Tasks that exercise hooks, middleware, locals, catch_error, aborts and max_duration."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from slipstream import AbortTaskRunError, TaskContext, locals, logger, retry, task

DB = locals.create("db")


async def middleware(payload: Any, ctx: TaskContext, next: Any) -> None:
    locals.set(DB, {"connected": True})
    logger.info("middleware before")
    await next()
    logger.info("middleware after")


def hook(name: str) -> Any:
    def record(ctx: TaskContext, **_: Any) -> None:
        logger.info(name, attempt=ctx.run.attempt.number)

    return record


def init(payload: Any, ctx: TaskContext) -> dict[str, str]:
    logger.info("init", attempt=ctx.run.attempt.number)
    return {"from": "init"}


def on_failure(error: BaseException, ctx: TaskContext) -> None:
    logger.info("on_failure", attempt=ctx.run.attempt.number, error=str(error))


def on_complete(result: Any, ctx: TaskContext) -> None:
    logger.info("on_complete", ok=result.ok)


@task(
    id="hooks-order",
    retry={"max_attempts": 2, "min_timeout_ms": 10, "max_timeout_ms": 10},
    middleware=middleware,
    on_start=hook("on_start"),
    on_start_attempt=hook("on_start_attempt"),
    init=init,
    cleanup=hook("cleanup"),
    on_success=hook("on_success"),
    on_failure=on_failure,
    on_complete=on_complete,
)
async def hooks_order(payload: dict, ctx: TaskContext) -> dict:
    logger.info("run", attempt=ctx.run.attempt.number)
    if payload.get("fail") == "always" or (payload.get("fail") == "first" and ctx.run.attempt.number == 1):
        raise RuntimeError(f"attempt {ctx.run.attempt.number} fails")
    return {"init": ctx.init, "db": locals.get_or_throw(DB)}


def broken_hook(**_: Any) -> None:
    raise RuntimeError("hook exploded")


@task(id="success-hook-fails", on_success=broken_hook, on_complete=broken_hook)
async def success_hook_fails(payload: Any, ctx: TaskContext) -> str:
    return "still completed"


@task(id="start-hook-fails", retry={"max_attempts": 2, "min_timeout_ms": 10, "max_timeout_ms": 10},
      on_start_attempt=broken_hook)
async def start_hook_fails(payload: Any, ctx: TaskContext) -> str:
    return "never"


def catch(error: Exception, retry_delay_ms: int) -> dict[str, Any] | None:
    logger.info("catch_error", error=type(error).__name__, default_delay=retry_delay_ms)
    if isinstance(error, ValueError):
        return {"skip_retrying": True}
    return {"retry_delay_ms": 0}


@task(id="catches", retry={"max_attempts": 3, "min_timeout_ms": 60_000, "max_timeout_ms": 60_000},
      catch_error=catch)
async def catches(payload: dict, ctx: TaskContext) -> str:
    if payload["raise"] == "value":
        raise ValueError("not worth retrying")
    if ctx.run.attempt.number < 3:
        raise KeyError("retry me now")
    return "third time"


@task(id="aborts", retry={"max_attempts": 5, "min_timeout_ms": 10, "max_timeout_ms": 10})
async def aborts(payload: Any, ctx: TaskContext) -> None:
    raise AbortTaskRunError("giving up on purpose")


@task(id="retries-a-block")
async def retries_a_block(payload: Any, ctx: TaskContext) -> dict:
    calls: list[int] = []

    async def flaky_call(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 3:
            raise ConnectionError("try again")
        return "ok"

    result = await retry.on_throw(flaky_call, max_attempts=3, min_timeout_ms=1, max_timeout_ms=5)
    return {"result": result, "calls": calls, "run_attempt": ctx.run.attempt.number}


@task(id="too-slow", max_duration=1, on_failure=on_failure)
async def too_slow(payload: Any, ctx: TaskContext) -> None:
    await asyncio.sleep(30)


@task(id="too-slow-sync", max_duration=1)
def too_slow_sync(payload: Any, ctx: TaskContext) -> None:
    time.sleep(30)


def log_cancel(ctx: TaskContext, signal: Any) -> None:
    logger.info("on_cancel", cancelled=signal.is_cancelled)


@task(id="cancellable", on_cancel=log_cancel)
async def cancellable(payload: Any, ctx: TaskContext) -> None:
    logger.info("started")
    await asyncio.sleep(60)


async def await_the_run(run_promise: Any) -> None:
    output = await run_promise
    logger.info("on_cancel saw the output", output=output)


@task(id="cancel-waits", on_cancel=await_the_run)
async def cancel_waits(payload: Any, ctx: TaskContext) -> dict:
    logger.info("started")
    await ctx.signal.wait()
    return {"stopped": "cleanly"}


@task(id="parent-of-slow")
async def parent_of_slow(payload: Any, ctx: TaskContext) -> None:
    from slipstream import tasks

    child = await tasks.trigger("sleepy", {"seconds": 60})
    logger.info("child", id=child.id)
    await asyncio.sleep(60)


@task(id="memory-hog", machine="micro", retry={"max_attempts": 1})
async def memory_hog(payload: dict, ctx: TaskContext) -> int:
    blob = b"x" * (payload["mb"] * 1024 * 1024)
    await asyncio.sleep(2)
    return len(blob)


@task(id="memory-hog-upgrades", machine={"preset": "micro"},
      retry={"max_attempts": 2, "out_of_memory": {"machine": "small-2x"}})
async def memory_hog_upgrades(payload: dict, ctx: TaskContext) -> dict:
    blob = b"x" * (payload["mb"] * 1024 * 1024)
    await asyncio.sleep(1)
    assert ctx.machine is not None
    return {"bytes": len(blob), "machine": ctx.machine.name, "memory_gb": ctx.machine.memory_gb}


@task(id="segfault")
def segfault(payload: Any, ctx: TaskContext) -> None:
    import ctypes

    ctypes.string_at(0)


async def failing_middleware(next: Any) -> None:
    raise RuntimeError("middleware refused")


@task(id="middleware-fails", retry={"max_attempts": 2, "min_timeout_ms": 10, "max_timeout_ms": 10},
      middleware=failing_middleware, on_failure=on_failure)
async def middleware_fails(payload: Any, ctx: TaskContext) -> str:
    logger.info("run")
    return "never"


def failing_init(ctx: TaskContext) -> None:
    raise RuntimeError(f"init failed on attempt {ctx.run.attempt.number}")


@task(id="init-fails", retry={"max_attempts": 2, "min_timeout_ms": 10, "max_timeout_ms": 10},
      init=failing_init, cleanup=hook("cleanup"))
async def init_fails(payload: Any, ctx: TaskContext) -> str:
    return "never"


@task(id="slow-retry", retry={"max_attempts": 2, "min_timeout_ms": 4000, "max_timeout_ms": 4000,
                              "randomize": False})
async def slow_retry(payload: Any, ctx: TaskContext) -> int:
    if ctx.run.attempt.number == 1:
        raise RuntimeError("fail, then wait 4 s")
    return ctx.run.attempt.number


@task(id="raises-timeout", retry={"max_attempts": 2, "min_timeout_ms": 10, "max_timeout_ms": 10})
async def raises_timeout(payload: Any, ctx: TaskContext) -> None:
    raise TimeoutError("the upstream API timed out")


def broken_catch(error: Exception) -> None:
    raise RuntimeError("catch_error itself failed")


@task(id="catch-error-fails", retry={"max_attempts": 3, "min_timeout_ms": 10, "max_timeout_ms": 10},
      catch_error=broken_catch)
async def catch_error_fails(payload: Any, ctx: TaskContext) -> None:
    raise ValueError("original")


@task(id="swallows-the-deadline", max_duration=1)
async def swallows_the_deadline(payload: Any, ctx: TaskContext) -> str:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        logger.info("caught", signal=ctx.signal.is_cancelled)
        return "pretends to be done"
    return "never"
