"""Ids: a prefix, then 26 lowercase base32 characters that sort by creation time."""

from __future__ import annotations

import re

import pytest
from slipstream_platform import ids
from slipstream_platform.ids import new_id

# Crockford's base32, lowercase: no i, l, o or u.
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ID = re.compile(rf"^run_[{ALPHABET}]{{26}}$")


def _at(monkeypatch: pytest.MonkeyPatch, ms: int) -> None:
    monkeypatch.setattr(ids.time, "time", lambda: ms / 1000)


def test_an_id_is_the_prefix_and_26_base32_characters() -> None:
    value = new_id("run")
    assert ID.match(value), value
    prefix, body = value.split("_")
    assert prefix == "run"
    assert len(body) == 26
    assert set(body) <= set(ALPHABET)


def test_the_prefix_may_contain_underscores() -> None:
    value = new_id("sk_dev")
    assert value.startswith("sk_dev_")
    assert len(value.rsplit("_", 1)[1]) == 26


def test_ids_of_the_same_millisecond_share_the_time_part(monkeypatch: pytest.MonkeyPatch) -> None:
    _at(monkeypatch, 1_714_564_800_000)
    first, second = new_id("run"), new_id("run")
    assert first[:14] == second[:14]  # "run_" and 10 characters (50 bits) of time
    assert first != second


def test_ids_from_later_milliseconds_sort_after_earlier_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    for ms in [1_714_564_800_000, 1_714_564_800_001, 1_714_564_800_002, 1_714_564_801_000, 2_000_000_000_000]:
        _at(monkeypatch, ms)
        made.extend(new_id("run") for _ in range(50))
        later = made[-50:]
        assert all(earlier < newer for earlier in made[:-50] for newer in later)
    assert made[0] < made[-1]


def test_ids_are_unique() -> None:
    assert len({new_id("run") for _ in range(10_000)}) == 10_000
