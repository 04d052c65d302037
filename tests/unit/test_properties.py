"""Properties of the duration and cron parsers and of the run state machine, checked by
Hypothesis on inputs nobody wrote by hand (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from slipstream_core import cron
from slipstream_core.durations import MAX_SECONDS, DurationOutOfRange, parse_duration, resolve_delay
from slipstream_platform.statemachine import TRANSITIONS, can_transition
from slipstream_platform.store.runs import EDGES
from slipstream_proto.statuses import FINAL_STATUSES, RunStatus

UNITS = {"w": 604800, "d": 86400, "hr": 3600, "h": 3600, "m": 60, "s": 1}
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
parts = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(UNITS))), min_size=1, max_size=6)


@settings(deadline=None)
@given(parts)
def test_a_written_duration_is_the_sum_of_its_parts_or_refused_as_too_long(written: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in written)
    total = sum(n * UNITS[unit] for n, unit in written)
    if total > MAX_SECONDS:
        try:
            parse_duration(text)
        except DurationOutOfRange:
            return
        raise AssertionError(f"{text} is over 100 years and was accepted")
    assert parse_duration(text) == timedelta(seconds=total)
    assert resolve_delay(text, NOW) == (NOW + timedelta(seconds=total) if total else None)


@settings(deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_a_duration_or_a_value_error(text: str) -> None:
    try:
        parse_duration(text)
    except ValueError:
        pass
    try:
        resolve_delay(text, NOW)  # a duration, an ISO time, or a ValueError: never anything else
    except ValueError:
        pass


@settings(deadline=None)
@given(st.text(max_size=40), st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Nowhere/Else", ""]))
def test_any_text_is_a_cron_or_a_cron_error(expression: str, zone: str) -> None:
    try:
        spec = cron.parse(expression, zone)
    except cron.CronError:
        return
    assert cron.describe(spec)


field = st.one_of(st.just("*"), st.integers(0, 59).map(str), st.integers(1, 30).map(lambda n: f"*/{n}"))
hours = st.one_of(st.just("*"), st.integers(0, 23).map(str), st.integers(1, 12).map(lambda n: f"*/{n}"))
days = st.one_of(st.just("*"), st.integers(1, 28).map(str))
weekdays = st.one_of(st.just("*"), st.integers(0, 7).map(str), st.just("1-5"))
crons = st.builds(lambda m, h, d, w: f"{m} {h} {d} * {w}", field, hours, days, weekdays)


@settings(max_examples=60, deadline=None)
@given(crons, st.sampled_from(["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe"]),
       st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)))
def test_the_next_ticks_of_a_cron_are_after_the_start_in_order_and_never_twice(
        expression: str, zone: str, after: datetime) -> None:
    spec = cron.parse(expression, zone)
    ticks = cron.next_ticks(spec, after, 5)
    assert len(ticks) == 5
    assert all(t > after for t in ticks)
    assert ticks == sorted(set(ticks))  # strictly increasing: no tick fires twice, none goes back
    assert cron.describe(spec).endswith(f"({zone})")


statuses = st.sampled_from(list(RunStatus))


@settings(deadline=None)
@given(st.lists(statuses, min_size=1, max_size=30))
def test_a_walk_of_the_state_machine_never_leaves_a_final_status(walk: list[RunStatus]) -> None:
    current = RunStatus.QUEUED
    for target in walk:
        if not can_transition(current, target):
            continue
        assert current not in FINAL_STATUSES
        current = target
    if current in FINAL_STATUSES:
        assert not TRANSITIONS[current]


def test_every_unfinished_status_can_reach_a_final_one_and_every_store_edge_is_allowed() -> None:
    for status in RunStatus:
        seen, frontier = {status}, [status]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & FINAL_STATUSES, f"{status} can never finish"
    for source, target in EDGES:
        assert can_transition(source, target), (source, target)
