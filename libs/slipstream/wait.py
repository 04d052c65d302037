"""Waiting inside a task without holding a slot: `await wait.for_(minutes=5)`, `await wait.until(dt)`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from slipstream._waits import waitpoint

__all__ = ["for_", "until"]


async def for_(
    *, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0, weeks: float = 0
) -> None:
    """Suspend the run for this long; it resumes in a worker process when the time is up."""
    delta = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days, weeks=weeks)
    if delta.total_seconds() < 0:
        raise ValueError(f"wait.for_ needs a duration of 0 or more, got {delta}")
    await until(datetime.now(UTC) + delta)


async def until(date: datetime) -> None:
    """Suspend the run until `date` (naive means UTC); a past date still passes a waitpoint."""
    at = date if date.tzinfo else date.replace(tzinfo=UTC)
    await waitpoint("DURATION", resume_at=at.timestamp())
