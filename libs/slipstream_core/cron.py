"""Cron schedules as the seed writes them, in IANA time zones.

Five fields (minute hour day-of-month month day-of-week); `L` in day-of-month is the last
day; `1L`-`7L` in day-of-week the last Monday ... Sunday of the month; 0 and 7 are Sunday;
no seconds field.

Daylight saving: a tick is a wall-clock time and fires once on each day it occurs.
- Fall back (a wall time happens twice): it fires at the first occurrence only.
- Spring forward (a wall time does not exist): it fires as if the clock had not jumped, so
  `30 2 * * *` fires at 03:30 local time on that day.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import msgspec
from croniter import croniter

_LAST_WEEKDAY = re.compile(r"^([0-7])L$")


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says what to write."""


class CronSpec(msgspec.Struct, frozen=True):
    """A checked expression (in croniter's dialect) and its zone."""

    expression: str
    croniter_expression: str
    timezone: str


@functools.lru_cache(maxsize=4096)
def parse(expression: str, timezone: str = "UTC") -> CronSpec:
    """Check an expression and a zone; CronError otherwise (remembered: schedules repeat)."""
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(
            f"cron {expression!r} has {len(fields)} fields; use five (minute hour day-of-month month"
            " day-of-week), e.g. '0 */2 * * *'" + ("; seconds are not supported" if len(fields) == 6 else "")
        )
    dow = ",".join(_LAST_WEEKDAY.sub(r"L\1", part) for part in fields[4].split(","))
    translated = " ".join([*fields[:4], dow])
    if not croniter.is_valid(translated):
        raise CronError(f"cron {expression!r} is not a valid expression")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"time zone {timezone!r} is not an IANA zone name like 'America/New_York'") from None
    return CronSpec(expression=expression, croniter_expression=translated, timezone=timezone)


def next_ticks(spec: CronSpec, after: datetime, count: int = 1) -> list[datetime]:
    """The next `count` ticks strictly after `after`, in UTC."""
    return list(_next_ticks(spec, after, count))


# Schedules of one expression and zone share their ticks: 10,000 schedules in 400 zones firing
# at the same minute need 400 computations, not 10,000.
@functools.lru_cache(maxsize=16384)
def _next_ticks(spec: CronSpec, after: datetime, count: int) -> tuple[datetime, ...]:
    zone = ZoneInfo(spec.timezone)
    wall_clock = croniter(spec.croniter_expression, after.astimezone(zone).replace(tzinfo=None))
    ticks: list[datetime] = []
    last = after
    while len(ticks) < count:
        wall = wall_clock.get_next(datetime)
        # fold=0: an ambiguous wall time is its first occurrence; a skipped one keeps the old offset.
        tick = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if tick <= last:
            continue
        ticks.append(tick)
        last = tick
    return tuple(ticks)


def latest_due(spec: CronSpec, next_run_at: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The tick to fire now (`next_run_at` <= now) and the one after it. After downtime only the
    most recent missed tick fires (once); the earlier ones are skipped."""
    following = _next_ticks(spec, next_run_at, 1)[0]
    if following > now:
        return next_run_at, following  # on time: no tick was missed
    zone = ZoneInfo(spec.timezone)
    wall_clock = croniter(spec.croniter_expression, now.astimezone(zone).replace(tzinfo=None) + timedelta(seconds=1))
    latest = next_run_at
    for _ in range(3):  # a tick shifted by a daylight-saving gap may map past `now`: step back
        candidate = wall_clock.get_prev(datetime).replace(tzinfo=zone, fold=0).astimezone(UTC)
        if candidate <= now:
            latest = max(latest, candidate)
            break
    return latest, next_ticks(spec, latest)[0]


def timezones() -> list[str]:
    """Every IANA zone name, sorted."""
    return sorted(available_timezones())


_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = ["", "January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]
_NUMBER = re.compile(r"^\d+$")


def _days(field: str) -> str | None:
    """A day-of-week field in words: `1-5` Monday to Friday, `0,6` Sunday and Saturday."""
    names = []
    for part in field.split(","):
        if _NUMBER.match(part) and int(part) <= 7:
            names.append(_DAYS[int(part)])
        elif re.match(r"^[0-7]-[0-7]$", part):
            first, last = (int(x) for x in part.split("-"))
            names.append(f"{_DAYS[first]} to {_DAYS[last]}")
        elif _LAST_WEEKDAY.match(part):
            names.append(f"the last {_DAYS[int(part[0])]} of the month")
        else:
            return None
    return " and ".join(names)


def describe(spec: CronSpec) -> str:
    """The expression in words, for people ("at 09:00 on Monday to Friday (Europe/Paris)"); fields
    it has no words for are named as they are."""
    minute, hour, dom, month, dow = spec.expression.split()
    zone = f" ({spec.timezone})"
    every_day = dom == "*" and month == "*" and dow == "*"
    if (minute, hour) == ("*", "*") and every_day:
        return "every minute" + zone
    step = re.match(r"^\*/(\d+)$", minute)
    if step and hour == "*" and every_day:
        return f"every {step[1]} minutes" + zone
    if _NUMBER.match(minute) and hour == "*" and every_day:
        return f"at minute {int(minute)} of every hour" + zone
    hour_step = re.match(r"^\*/(\d+)$", hour)
    if _NUMBER.match(minute) and hour_step and every_day:
        return f"at minute {int(minute)} past every {hour_step[1]} hours" + zone
    if _NUMBER.match(minute) and _NUMBER.match(hour):
        at = f"at {int(hour):02d}:{int(minute):02d}"
        days = _days(dow) if dow != "*" else None
        if every_day:
            return f"{at} every day" + zone
        if dom == "*" and month == "*" and days:
            return f"{at} on {days}" + zone
        if dow == "*" and month == "*" and (_NUMBER.match(dom) or dom == "L"):
            return f"{at} on {'the last day' if dom == 'L' else f'day {int(dom)}'} of every month" + zone
        if dow == "*" and _NUMBER.match(dom) and _NUMBER.match(month) and 1 <= int(month) <= 12:
            return f"{at} on {_MONTHS[int(month)]} {int(dom)}" + zone
    return f"minute {minute}, hour {hour}, day of month {dom}, month {month}, day of week {dow}" + zone
