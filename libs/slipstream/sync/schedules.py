"""`slipstream.schedules`, not awaited (declare scheduled tasks with `slipstream.schedules.task`)."""

from __future__ import annotations

from slipstream_proto import Schedule, SchedulePage

from slipstream import schedules as _schedules
from slipstream._bridge import bridge

__all__ = ["activate", "create", "deactivate", "delete", "list", "retrieve", "timezones", "update"]
_list = list


def create(*, task: str, cron: str, deduplication_key: str, external_id: str | None = None,
           timezone: str = "UTC") -> Schedule:
    """Attach a schedule to a scheduled task (an upsert by `deduplication_key`)."""
    return bridge.call(_schedules.create, task=task, cron=cron, deduplication_key=deduplication_key,
                       external_id=external_id, timezone=timezone)


def retrieve(schedule_id: str) -> Schedule:
    """One schedule."""
    return bridge.call(_schedules.retrieve, schedule_id)


def list(*, page: int = 1, per_page: int = 10) -> SchedulePage:  # noqa: A001 - the seed's name
    """A page of the environment's schedules."""
    return bridge.call(_schedules.list, page=page, per_page=per_page)


def update(schedule_id: str, *, task: str, cron: str, external_id: str | None = None,
           timezone: str = "UTC") -> Schedule:
    """Change an imperative schedule."""
    return bridge.call(_schedules.update, schedule_id, task=task, cron=cron, external_id=external_id,
                       timezone=timezone)


def deactivate(schedule_id: str) -> Schedule:
    """Stop a schedule from firing."""
    return bridge.call(_schedules.deactivate, schedule_id)


def activate(schedule_id: str) -> Schedule:
    """Let a deactivated schedule fire again."""
    return bridge.call(_schedules.activate, schedule_id)


def delete(schedule_id: str) -> None:
    """Remove a schedule."""
    bridge.call(_schedules.delete, schedule_id)


def timezones() -> _list[str]:
    """Every IANA time zone a schedule accepts."""
    return bridge.call(_schedules.timezones)
