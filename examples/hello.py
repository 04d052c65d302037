"""The hello-world example."""

from __future__ import annotations

from slipstream import TaskContext, task


@task(id="hello-world")
async def hello_world(payload: dict, ctx: TaskContext) -> dict:
    return {"greeting": f"Hello {payload['name']}", "run": ctx.run.id}


@task(id="hello-sync")
def hello_sync(payload: dict, ctx: TaskContext) -> dict:
    """Plain `def` tasks work too (they run in a thread of the worker process)."""
    return {"greeting": f"Hi {payload.get('name', 'there')}", "attempt": ctx.run.attempt.number}
