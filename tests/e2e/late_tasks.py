"""A task that no worker serves until a test starts a second supervisor with this module."""

from __future__ import annotations

from slipstream import TaskContext, task


@task(id="late-task")
async def late_task(payload: dict, ctx: TaskContext) -> dict:
    return {"late": True, "payload": payload}
