"""No-op tasks for the benchmarks."""

from __future__ import annotations

from slipstream import TaskContext, schedules, task


def _noop(task_id: str) -> None:
    @task(id=task_id)
    async def run(payload: dict, ctx: TaskContext) -> None:
        return None


for _id in ("noop-warmup", "noop-http", "noop-sdk", "noop-latency"):
    _noop(_id)


for _id in ("noop-delayed",):
    _noop(_id)


@schedules.task(id="noop-scheduled")
async def noop_scheduled(payload: schedules.ScheduledPayload, ctx: TaskContext) -> None:
    return None
