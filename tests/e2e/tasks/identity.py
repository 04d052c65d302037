"""Tasks that use idempotency keys from inside a run."""

from __future__ import annotations

from typing import Any

from slipstream import TaskContext, idempotency_keys, logger, task
from slipstream.tasks import trigger, trigger_and_wait


@task(id="idempotent-parent", retry={"max_attempts": 2, "min_timeout_ms": 10, "max_timeout_ms": 10})
async def idempotent_parent(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    run_key = await idempotency_keys.create("child")
    attempt_key = await idempotency_keys.create("child", scope="attempt")
    by_run = await trigger("echo", {"scope": "run"}, idempotency_key=run_key)
    by_attempt = await trigger("echo", {"scope": "attempt"}, idempotency_key=attempt_key)
    logger.info("children", by_run=by_run.id, by_attempt=by_attempt.id)
    if ctx.run.attempt.number == 1:
        raise RuntimeError("retry me")
    return {"by_run": by_run.id, "by_attempt": by_attempt.id}


@task(id="waits-on-keyed-child")
async def waits_on_keyed_child(payload: dict, ctx: TaskContext) -> Any:
    result = await trigger_and_wait("echo", {"keyed": True}, idempotency_key=payload["key"])
    return {"id": result.id, "output": result.unwrap()}
