"""Cron syntax and daylight-saving rules (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from slipstream_core.cron import CronError, latest_due, next_ticks, parse

NEW_YORK = ZoneInfo("America/New_York")


def local(ticks: list[datetime], zone: ZoneInfo = NEW_YORK) -> list[str]:
    return [t.astimezone(zone).isoformat() for t in ticks]


def test_last_weekday_of_the_month() -> None:
    ticks = next_ticks(parse("0 0 * * 1L"), datetime(2026, 11, 1, tzinfo=UTC), 3)
    assert [t.date().isoformat() for t in ticks] == ["2026-11-30", "2026-12-28", "2027-01-25"]


def test_last_day_of_the_month_and_both_sundays() -> None:
    ticks = next_ticks(parse("0 0 L * *"), datetime(2027, 1, 1, tzinfo=UTC), 2)
    assert [t.date().isoformat() for t in ticks] == ["2027-01-31", "2027-02-28"]
    sundays_0 = next_ticks(parse("0 12 * * 0"), datetime(2026, 11, 1, tzinfo=UTC), 2)
    sundays_7 = next_ticks(parse("0 12 * * 7"), datetime(2026, 11, 1, tzinfo=UTC), 2)
    assert sundays_0 == sundays_7 and all(t.weekday() == 6 for t in sundays_0)


@pytest.mark.parametrize(("expression", "fragment"), [
    ("0 0 * * * 10", "seconds are not supported"),
    ("* * * *", "has 4 fields"),
    ("61 * * * *", "not a valid expression"),
    ("0 0 * * 8L", "not a valid expression"),
])
def test_bad_expressions_say_what_is_wrong(expression: str, fragment: str) -> None:
    with pytest.raises(CronError, match=fragment):
        parse(expression)


def test_unknown_zone() -> None:
    with pytest.raises(CronError, match="IANA"):
        parse("0 0 * * *", "Mars/Olympus_Mons")


def test_spring_forward_fires_once_shifted_by_the_gap() -> None:
    # 2026-03-08 02:30 does not exist in New York: that day it fires at 03:30 local.
    ticks = next_ticks(parse("30 2 * * *", "America/New_York"), datetime(2026, 3, 7, 12, tzinfo=UTC), 3)
    assert local(ticks) == ["2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]


def test_fall_back_fires_once_at_the_first_occurrence() -> None:
    # 2026-11-01 01:30 happens twice in New York: it fires at the first one only.
    ticks = next_ticks(parse("30 1 * * *", "America/New_York"), datetime(2026, 10, 31, 12, tzinfo=UTC), 3)
    assert local(ticks) == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"]
    half_hourly = next_ticks(parse("*/30 * * * *", "America/New_York"), datetime(2026, 11, 1, 4, tzinfo=UTC), 6)
    assert [t.astimezone(NEW_YORK).strftime("%H:%M") for t in half_hourly] == [
        "00:30", "01:00", "01:30", "02:00", "02:30", "03:00"]


def test_after_downtime_only_the_latest_missed_tick_fires() -> None:
    tick, following = latest_due(parse("0 * * * *"), datetime(2026, 1, 1, tzinfo=UTC),
                                 datetime(2026, 1, 1, 5, 30, tzinfo=UTC))
    assert tick == datetime(2026, 1, 1, 5, tzinfo=UTC) and following == datetime(2026, 1, 1, 6, tzinfo=UTC)
    on_time, after = latest_due(parse("0 * * * *"), datetime(2026, 1, 1, 5, tzinfo=UTC),
                                datetime(2026, 1, 1, 5, 0, 1, tzinfo=UTC))
    assert on_time == datetime(2026, 1, 1, 5, tzinfo=UTC) and after == datetime(2026, 1, 1, 6, tzinfo=UTC)


def test_a_long_outage_still_fires_only_the_latest_tick() -> None:
    tick, following = latest_due(parse("* * * * *"), datetime(2025, 1, 1, tzinfo=UTC),
                                 datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))
    assert tick == datetime(2026, 1, 1, tzinfo=UTC) and following == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
