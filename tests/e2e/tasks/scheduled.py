"""Scheduled tasks: one declared with a cron, one for schedules attached at run time."""

from __future__ import annotations

from typing import Any

from slipstream import TaskContext, schedules


@schedules.task(id="every-two-hours", cron={"pattern": "0 */2 * * *", "timezone": "Europe/London"})
async def every_two_hours(payload: schedules.ScheduledPayload, ctx: TaskContext) -> dict[str, Any]:
    return {"timestamp": payload.timestamp.isoformat(), "schedule": payload.schedule_id}


@schedules.task(id="per-tenant-report")
async def per_tenant_report(payload: schedules.ScheduledPayload, ctx: TaskContext) -> dict[str, Any]:
    return {
        "timestamp": payload.timestamp.isoformat(),
        "last": payload.last_timestamp.isoformat() if payload.last_timestamp else None,
        "external_id": payload.external_id,
        "timezone": payload.timezone,
        "upcoming": len(payload.upcoming),
        "type": type(payload).__name__,
    }
