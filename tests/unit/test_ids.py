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


def _reference(prefix: str, value: int) -> str:
    """The digits one at a time, least significant first (how ids were first made)."""
    chars = []
    for _ in range(26):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def test_the_digits_are_the_value_in_base32(monkeypatch: pytest.MonkeyPatch) -> None:
    for noise in [bytes(10), b"\xff" * 10, bytes(range(10)), bytes(range(246, 256))]:
        monkeypatch.setattr(ids.os, "urandom", lambda n, noise=noise: noise * (n // 10))
        for ms in [0, 1, 1_714_564_800_000, 2**48 - 1]:
            _at(monkeypatch, ms)
            expected = _reference("run", (ms << 80) | int.from_bytes(noise, "big"))
            assert new_id("run") == expected
            assert ids.new_ids("run", 3) == [expected] * 3


def test_ids_made_together_differ() -> None:
    made = ids.new_ids("attempt", 16)
    assert len(set(made)) == 16 and all(m.startswith("attempt_") and len(m) == 34 for m in made)
