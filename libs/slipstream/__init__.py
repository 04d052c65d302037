"""Slipstream: durable background tasks for Python.

    from slipstream import task, tasks, runs

    @task(id="hello-world")
    async def hello_world(payload: dict, ctx) -> dict:
        return {"greeting": f"Hello {payload['name']}"}
"""

from __future__ import annotations

from slipstream_proto import Run, RunStatus

from slipstream import (
    auth,
    batch,
    deployments,
    errors,
    idempotency_keys,
    metadata,
    queues,
    regions,
    retry,
    runs,
    schedules,
    tasks,
    wait,
)
from slipstream._client import aclose
from slipstream._config import configure
from slipstream._context import BatchResult, TaskContext, TaskResult, TaskRunResult
from slipstream._locals import LocalKey, locals
from slipstream._logger import logger
from slipstream._retry import RetryOptions
from slipstream._task import BatchHandle, Queue, RunHandle, Task, queue, schema_task, task
from slipstream._waits import step
from slipstream.errors import AbortTaskRunError

__all__ = [
    "AbortTaskRunError",
    "BatchHandle",
    "BatchResult",
    "LocalKey",
    "Queue",
    "RetryOptions",
    "Run",
    "RunHandle",
    "RunStatus",
    "Task",
    "TaskContext",
    "TaskResult",
    "TaskRunResult",
    "aclose",
    "auth",
    "batch",
    "configure",
    "deployments",
    "errors",
    "idempotency_keys",
    "locals",
    "logger",
    "metadata",
    "queue",
    "queues",
    "regions",
    "retry",
    "runs",
    "schedules",
    "schema_task",
    "step",
    "task",
    "tasks",
    "wait",
]
