"""Tasks that test_deployments serves from two supervisors started with different versions."""

from __future__ import annotations

from typing import Any

from slipstream import TaskContext, task


@task(id="version-echo")
async def version_echo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return payload


@task(id="version-parent")
async def version_parent(payload: dict[str, Any], ctx: TaskContext) -> Any:
    # The child waits an hour unless the test reschedules it: the parent stays WAITING, locked
    # to the version of its first attempt, until then.
    result = await version_echo.trigger_and_wait(payload, delay="1h", tags=[payload["tag"]])
    return result.output
