"""Durations and times as the seed writes them: "1h52m18s", ISO 8601, datetimes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"(?:\d+(?:w|d|hr|h|m|s))+")
_PART = re.compile(r"(\d+)(w|d|hr|h|m|s)")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "hr": 3600, "h": 3600, "m": 60, "s": 1}
# No delay, TTL or expiry runs longer than this (a larger one would overflow a datetime).
MAX_SECONDS = 100 * 366 * 86400


class DurationOutOfRange(ValueError):
    """A duration written right whose length is refused (over 100 years): a rule, not a syntax error."""


def parse_duration(text: str) -> timedelta:
    """Parse "1h52m18s"-style text (units w, d, h or hr, m, s); ValueError otherwise."""
    if not _DURATION.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a duration: write it like '30s', '15m', '2h' or '1h52m18s'"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    if seconds > MAX_SECONDS:
        raise DurationOutOfRange(f"{text[:80]!r} is longer than 100 years")
    return timedelta(seconds=seconds)


def resolve_delay(value: str | datetime, now: datetime) -> datetime | None:
    """When a run with this `delay` may start, or None if it may start now.

    A duration counts from `now`; an ISO 8601 string or datetime is a point in time
    (naive means UTC). A time in the past means no delay.
    """
    if isinstance(value, datetime):
        at = value
    elif _DURATION.fullmatch(value):
        at = now + parse_duration(value)
    else:
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"delay {value!r} is neither a duration like '1h30m' nor an ISO 8601 time"
            ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at if at > now else None


def expiration_seconds(value: str | int, now: datetime) -> float:
    """Seconds from `now` to an expiry given as a duration ("1h"), seconds, or an ISO 8601 time."""
    if isinstance(value, bool):
        raise ValueError("expirationTime is a duration like '1h', a number of seconds, or an ISO 8601 time")
    if isinstance(value, int):
        seconds = float(value)
    elif _DURATION.fullmatch(value):
        seconds = parse_duration(value).total_seconds()
    else:
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"expirationTime {value[:100]!r} is neither a duration like '1h' nor an ISO 8601 time") \
                from None
        seconds = ((at if at.tzinfo else at.replace(tzinfo=UTC)) - now).total_seconds()
    if seconds <= 0:
        raise ValueError("expirationTime must lie in the future")
    return seconds
