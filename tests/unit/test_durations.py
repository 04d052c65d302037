"""Durations ("1h52m18s") and delays (duration, ISO 8601 or datetime)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from slipstream_core.durations import parse_duration, resolve_delay

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h52m18s", timedelta(hours=1, minutes=52, seconds=18)),
        ("88s", timedelta(seconds=88)),
        ("2w", timedelta(weeks=2)),
        ("1d", timedelta(days=1)),
        ("3hr", timedelta(hours=3)),
        ("15m", timedelta(minutes=15)),
        ("1d2h", timedelta(days=1, hours=2)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1x", "h1", "-1s", "1.5h", "1 h", "s", "1h 2m", "10"])
def test_parse_duration_rejects_malformed_text_with_an_example(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert repr(text) in message
    assert "1h52m18s" in message


def test_parse_duration_rejects_a_trailing_newline() -> None:
    with pytest.raises(ValueError):
        parse_duration("1s\n")


def test_resolve_delay_counts_a_duration_from_now() -> None:
    assert resolve_delay("1h30m", NOW) == NOW + timedelta(hours=1, minutes=30)


def test_resolve_delay_reads_an_iso_time_with_an_offset() -> None:
    at = resolve_delay("2024-05-01T15:00:00+02:00", NOW)
    assert at == datetime(2024, 5, 1, 13, 0, 0, tzinfo=UTC)
    assert at is not None and at.utcoffset() == timedelta(hours=2)


def test_resolve_delay_reads_z_as_utc() -> None:
    assert resolve_delay("2024-05-01T13:00:00Z", NOW) == datetime(2024, 5, 1, 13, tzinfo=UTC)


def test_resolve_delay_takes_a_naive_iso_time_as_utc() -> None:
    at = resolve_delay("2024-05-01T13:00:00", NOW)
    assert at == datetime(2024, 5, 1, 13, 0, 0, tzinfo=UTC)
    assert at is not None and at.tzinfo is not None


def test_resolve_delay_takes_an_aware_datetime_as_is() -> None:
    when = datetime(2024, 5, 2, 9, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert resolve_delay(when, NOW) == when


def test_resolve_delay_takes_a_naive_datetime_as_utc() -> None:
    assert resolve_delay(datetime(2024, 5, 2, 9, 0), NOW) == datetime(2024, 5, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2024-04-30T12:00:00Z",
        datetime(2020, 1, 1, tzinfo=UTC),
        NOW,  # "now" is not in the future either
        "0s",
    ],
    ids=["past-iso", "past-datetime", "now", "zero-duration"],
)
def test_resolve_delay_returns_none_for_a_time_not_in_the_future(value: str | datetime) -> None:
    assert resolve_delay(value, NOW) is None


@pytest.mark.parametrize("value", ["soon", "", "1x", "2024-13-45T00:00:00"])
def test_resolve_delay_rejects_garbage_naming_both_forms(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        resolve_delay(value, NOW)
    message = str(caught.value)
    assert repr(value) in message
    assert "ISO 8601" in message
