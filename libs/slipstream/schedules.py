"""Scheduled tasks: `@schedules.task(id=..., cron="0 */2 * * *")`, and schedules made at run time.

    @schedules.task(id="first-scheduled-task", cron="0 */2 * * *")
    async def first(payload: schedules.ScheduledPayload, ctx) -> None:
        print(payload.timestamp, payload.last_timestamp, payload.upcoming)

    await schedules.create(task="first-scheduled-task", cron="0 0 * * *",
                           deduplication_key="user-42-daily", external_id="user-42",
                           timezone="Europe/London")
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import quote

import msgspec
from slipstream_core.cron import CronError, parse
from slipstream_proto import Schedule, SchedulePage, Timezones

from slipstream import _client
from slipstream._task import Task, TaskFunction, schema_task
from slipstream.errors import TaskOptionError

__all__ = [
    "ScheduledPayload",
    "activate",
    "create",
    "deactivate",
    "delete",
    "list",
    "retrieve",
    "task",
    "timezones",
    "update",
]

_list = list
_ENVIRONMENT_TYPES = {"DEVELOPMENT", "STAGING", "PRODUCTION", "PREVIEW"}


class ScheduledPayload(msgspec.Struct, kw_only=True, rename="camel"):
    """What a scheduled task's run receives."""

    schedule_id: str
    type: str
    timestamp: datetime
    last_timestamp: datetime | None = None
    external_id: str | None = None
    timezone: str = "UTC"
    upcoming: _list[datetime] = []


class CronOptions(TypedDict, total=False):
    """`cron=` as a dict: the seed's `{pattern, timezone, environments}`."""

    pattern: str
    timezone: str
    environments: _list[str]


def task(
    id: str, *, cron: str | CronOptions | None = None, **options: Any
) -> Callable[[TaskFunction[Any, Any]], Task[Any, Any]]:
    """A task that runs on a schedule: declared here with `cron=`, or attached with `create`.

    Its payload is a ScheduledPayload. Takes every option of `@task`.
    """
    declared: dict[str, Any] | None = {}
    if cron is not None:
        spec = cron if isinstance(cron, dict) else {"pattern": cron}
        unknown = set(spec) - {"pattern", "timezone", "environments"}
        if unknown or "pattern" not in spec:
            raise TaskOptionError(
                f"schedules.task {id!r}: cron is a string or {{'pattern', 'timezone', 'environments'}}"
            )
        unknown_envs = set(spec.get("environments") or []) - _ENVIRONMENT_TYPES
        if unknown_envs:
            raise TaskOptionError(
                f"schedules.task {id!r}: unknown environment(s) {sorted(unknown_envs)}; use "
                + ", ".join(sorted(_ENVIRONMENT_TYPES))
            )
        try:
            checked = parse(spec["pattern"], spec.get("timezone", "UTC"))
        except CronError as exc:
            raise TaskOptionError(f"schedules.task {id!r}: {exc}") from None
        declared = {"cron": checked.expression, "timezone": checked.timezone,
                    "environments": spec.get("environments")}
    decorate = schema_task(id, schema=ScheduledPayload, **options)

    def register(fn: TaskFunction[Any, Any]) -> Task[Any, Any]:
        defined = decorate(fn)
        defined.schedule = declared
        return defined

    return register


async def create(
    *, task: str, cron: str, deduplication_key: str, external_id: str | None = None, timezone: str = "UTC"
) -> Schedule:
    """Attach a schedule to a scheduled task (an upsert by `deduplication_key`)."""
    body = {"task": task, "cron": cron, "deduplicationKey": deduplication_key, "externalId": external_id,
            "timezone": timezone}
    return await _client.request("POST", "/api/v1/schedules", Schedule, body)


async def retrieve(schedule_id: str) -> Schedule:
    """One schedule."""
    return await _client.request("GET", f"/api/v1/schedules/{quote(schedule_id, safe='')}", Schedule)


async def list(*, page: int = 1, per_page: int = 10) -> SchedulePage:  # noqa: A001 - the seed's name
    """A page of the environment's schedules."""
    return await _client.request("GET", f"/api/v1/schedules?page={page}&perPage={per_page}", SchedulePage)


async def update(
    schedule_id: str, *, task: str, cron: str, external_id: str | None = None, timezone: str = "UTC"
) -> Schedule:
    """Change an imperative schedule."""
    body = {"task": task, "cron": cron, "externalId": external_id, "timezone": timezone}
    return await _client.request("PUT", f"/api/v1/schedules/{quote(schedule_id, safe='')}", Schedule, body)


async def deactivate(schedule_id: str) -> Schedule:
    """Stop a schedule from firing (it keeps its settings)."""
    return await _client.request("POST", f"/api/v1/schedules/{quote(schedule_id, safe='')}/deactivate", Schedule)


async def activate(schedule_id: str) -> Schedule:
    """Let a deactivated schedule fire again, from its next tick."""
    return await _client.request("POST", f"/api/v1/schedules/{quote(schedule_id, safe='')}/activate", Schedule)


async def delete(schedule_id: str) -> None:
    """Remove a schedule."""
    await _client.request("DELETE", f"/api/v1/schedules/{quote(schedule_id, safe='')}", Schedule)


async def timezones() -> _list[str]:
    """Every IANA time zone a schedule accepts."""
    return (await _client.request("GET", "/api/v1/timezones", Timezones)).timezones
