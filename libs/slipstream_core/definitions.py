"""What a worker registers: its tasks and queues, as the SDK defined them in its process.

A worker process sends these to its supervisor when it has imported the task module
(`ipc.Ready`); the supervisor stores them with its worker row and applies the queues'
limits and the declarative schedules (`scheduling.sync_schedules`).
"""

from __future__ import annotations

from typing import Any

import msgspec


class QueueDefinition(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's limits as the code declares them (rate periods in seconds)."""

    name: str
    concurrency_limit: int | None = None
    per_key_limit: int | None = None
    rate_limit: int | None = None
    rate_period: float | None = None
    per_key_rate_limit: int | None = None
    per_key_rate_period: float | None = None


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """A task's `retry` option with its defaults filled in."""

    max_attempts: int = 3
    factor: float = 2.0
    min_timeout_ms: int = 1000
    max_timeout_ms: int = 60_000
    randomize: bool = True
    # An attempt that ran out of memory is retried on this machine preset.
    out_of_memory_machine: str | None = None


class ScheduleDeclaration(msgspec.Struct, frozen=True, kw_only=True):
    """`schedules.task`: a declarative schedule (`cron` set), or none yet (attached at run time)."""

    cron: str | None = None
    timezone: str | None = None
    environments: list[str] | None = None


class TaskDefinition(msgspec.Struct, frozen=True, kw_only=True):
    """One task of a worker."""

    id: str
    queue: QueueDefinition
    retry: RetryPolicy = RetryPolicy()
    max_duration: int | None = None
    machine: str | None = None
    # Set for scheduled tasks (`schedules.task`).
    schedule: ScheduleDeclaration | None = None
    # A schema task's payload as JSON Schema (the dashboard's Test page fills in an example).
    payload_schema: dict[str, Any] | None = None

    @property
    def scheduled(self) -> bool:
        return self.schedule is not None


_encoder = msgspec.json.Encoder()


def encode_tasks(tasks: list[TaskDefinition]) -> str:
    """The JSON a worker row keeps of its tasks."""
    return _encoder.encode(tasks).decode()
