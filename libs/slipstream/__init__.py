"""Slipstream: durable background tasks for Python.

    from slipstream import task, tasks, runs

    @task(id="hello-world")
    async def hello_world(payload: dict, ctx) -> dict:
        return {"greeting": f"Hello {payload['name']}"}
"""

from __future__ import annotations

from slipstream_proto import Run, RunStatus

from slipstream import errors, runs, tasks
from slipstream._client import aclose
from slipstream._config import configure
from slipstream._context import TaskContext
from slipstream._retry import RetryOptions
from slipstream._task import RunHandle, Task, task

__all__ = [
    "RetryOptions",
    "Run",
    "RunHandle",
    "RunStatus",
    "Task",
    "TaskContext",
    "aclose",
    "configure",
    "errors",
    "runs",
    "task",
    "tasks",
]
