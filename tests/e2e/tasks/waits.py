"""Tasks that wait: durations and child runs, with on_wait / on_resume."""

from __future__ import annotations

import asyncio
from typing import Any

from slipstream import TaskContext, logger, task, tasks, wait


def on_wait(wait: dict[str, Any]) -> None:
    logger.info("on_wait", type=wait["type"], seq=wait["seq"])


def on_resume(wait: dict[str, Any]) -> None:
    logger.info("on_resume", type=wait["type"], seq=wait["seq"])


def on_start_attempt(ctx: TaskContext) -> None:
    logger.info("on_start_attempt")


@task(id="waits", on_wait=on_wait, on_resume=on_resume, on_start_attempt=on_start_attempt)
async def waits(payload: dict, ctx: TaskContext) -> dict:
    logger.info("before")
    await wait.for_(seconds=payload.get("seconds", 1))
    logger.info("between")
    await wait.for_(seconds=payload.get("seconds", 1))
    logger.info("after")
    return {"attempt": ctx.run.attempt.number}


@task(id="waits-for-child", on_wait=on_wait, on_resume=on_resume)
async def waits_for_child(payload: dict, ctx: TaskContext) -> dict:
    from tests.e2e.tasks.sample import echo

    first = await echo.trigger_and_wait({"n": 1})
    second = await tasks.trigger_and_wait(payload.get("second", "echo"), {"n": 2}, max_attempts=1)
    return {
        "first": first.unwrap()["payload"],
        "first_id": first.id,
        "second_ok": second.ok,
        "second_status": second.status,
        "second_error": (second.error or {}).get("message"),
    }


@task(id="waits-under-max-duration", max_duration=3)
async def waits_under_max_duration(payload: Any, ctx: TaskContext) -> str:
    # Executes 0.8 s, replays that 0.8 s on resume, then 0.3 s more: 1.9 s of a 3 s budget,
    # over more than 5 s of wall-clock time.
    await asyncio.sleep(0.8)
    await wait.for_(seconds=3.5)
    await asyncio.sleep(0.3)
    return "waiting does not count"


@task(id="waits-long")
async def waits_long(payload: Any, ctx: TaskContext) -> None:
    from tests.e2e.tasks.sample import sleepy

    await sleepy.trigger_and_wait({"seconds": 60})


@task(id="waits-for-batch", on_wait=on_wait, on_resume=on_resume)
async def waits_for_batch(payload: dict, ctx: TaskContext) -> dict:
    from slipstream import batch

    from tests.e2e.tasks.sample import always_fails, echo

    logger.info("before the batch")
    first = await echo.batch_trigger_and_wait([{"payload": {"i": i}} for i in range(payload.get("n", 3))])
    mixed = await batch.trigger_by_task_and_wait([
        {"task": echo, "payload": "x"}, {"task": always_fails, "options": {"max_attempts": 1}}])
    by_id = await tasks.batch_trigger_and_wait("echo-sync", [{"payload": 7}])
    return {
        "first": [{"ok": r.ok, "task": r.task_identifier, "payload": r.unwrap()["payload"]} for r in first.runs],
        "mixed": [{"ok": r.ok, "task": r.task_identifier, "status": r.status, "error": (r.error or {}).get("name")}
                  for r in mixed.runs],
        "by_id": [r.output for r in by_id.runs],
        "attempt": ctx.run.attempt.number,
    }


@task(id="streams-a-batch", retry={"max_attempts": 2, "min_timeout_ms": 10, "max_timeout_ms": 20})
async def streams_a_batch(payload: dict, ctx: TaskContext) -> dict:
    """Waits for more than 1,000 children read from an async generator (streamed in chunks);
    with `fail_at`, the first attempt's generator raises there, after a chunk was sent."""
    from tests.e2e.tasks.sample import echo

    async def items() -> Any:
        for i in range(payload["n"]):
            if i == payload.get("fail_at") and ctx.run.attempt.number == 1:
                raise RuntimeError("the first attempt stops reading its items")
            if payload.get("pause"):
                await asyncio.sleep(payload["pause"])  # a slow source: time to kill its supervisor
            if i == payload.get("step_at"):
                from slipstream import step

                await step("page", int, i)  # a step while the items stream: refused
            yield {"payload": {"i": i}}

    result = await echo.batch_trigger_and_wait(items())
    return {"batch": result.id, "count": len(result.runs), "attempt": ctx.run.attempt.number,
            "ordered": [r.unwrap()["payload"]["i"] for r in result.runs] == list(range(payload["n"]))}


@task(id="waits-for-a-foreign-batch", retry={"max_attempts": 1})
async def waits_for_a_foreign_batch(payload: str, ctx: TaskContext) -> None:
    """Names a batch it did not make (what only a broken or hostile worker would send)."""
    from slipstream._waits import waitpoint

    await waitpoint("BATCH", batch_id=payload)


def charge(path: str, amount: int) -> dict:
    """A side effect that must happen once: a line in a file."""
    with open(path, "a") as f:
        f.write(f"charged {amount}\n")
    return {"amount": amount, "id": f"ch_{amount}"}


@task(id="steps", retry={"max_attempts": 2, "min_timeout_ms": 10, "max_timeout_ms": 20})
async def steps(payload: dict, ctx: TaskContext) -> dict:
    from slipstream import step

    charged = await step("charge", charge, payload["path"], payload["amount"])
    await wait.for_(seconds=0.2)

    async def receipt() -> dict:
        return {"attempt": ctx.run.attempt.number, "pair": (1, 2)}

    sent = await step("receipt", receipt)
    if ctx.run.attempt.number == 1 and payload.get("fail"):
        raise ValueError("failing after the steps, to be retried")
    return {"charged": charged, "sent": sent, "attempt": ctx.run.attempt.number}


@task(id="batch-waiter")
async def batch_waiter(payload: dict, ctx: TaskContext) -> dict:
    from tests.e2e.tasks.sample import sleepy

    result = await sleepy.batch_trigger_and_wait(
        [{"payload": {"seconds": payload.get("seconds", 0.2), "n": i}} for i in range(payload["children"])])
    return {"children": [r.id for r in result.runs], "ok": [r.ok for r in result.runs],
            "outputs": [r.output for r in result.runs]}


@task(id="chain")
async def chain(payload: dict, ctx: TaskContext) -> dict:
    """A run that waits for a child of itself, `depth` levels down; the last level fans out."""
    depth = payload["depth"]
    if depth == 0:
        leaves = await echo_leaf.batch_trigger_and_wait([{"payload": i} for i in range(3)])
        return {"depth": 0, "leaves": [r.output for r in leaves.runs], "run": ctx.run.id}
    below = await chain.trigger_and_wait({"depth": depth - 1})
    return {"depth": depth, "below": below.unwrap(), "run": ctx.run.id}


@task(id="echo-leaf")
async def echo_leaf(payload: Any, ctx: TaskContext) -> Any:
    return payload


@task(id="waits-for-delayed-batch")
async def waits_for_delayed_batch(payload: dict, ctx: TaskContext) -> None:
    from tests.e2e.tasks.sample import echo

    await echo.batch_trigger_and_wait([{"payload": i, "options": {"delay": "1h"}} for i in range(3)])


@task(id="waits-with-keys")
async def waits_with_keys(payload: dict, ctx: TaskContext) -> list[dict]:
    from tests.e2e.tasks.sample import echo

    key, old_key = payload["key"], payload["old_key"]
    result = await echo.batch_trigger_and_wait([
        {"payload": "a", "options": {"idempotency_key": key}},
        {"payload": "b", "options": {"idempotency_key": key}},
        {"payload": "c", "options": {"idempotency_key": old_key}},
    ])
    return [{"id": r.id, "ok": r.ok, "payload": (r.output or {}).get("payload")} for r in result.runs]


@task(id="traced")
async def traced(payload: Any, ctx: TaskContext) -> str:
    """A span of the task's own, then a child run waited for: the run's trace holds both."""
    from opentelemetry import trace

    from tests.e2e.tasks.sample import echo

    with trace.get_tracer("tests.e2e").start_as_current_span("own work", attributes={"step": "one"}):
        await asyncio.sleep(0.01)
    child = await echo.trigger_and_wait({"n": 1})
    return child.id
