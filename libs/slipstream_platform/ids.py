"""Ids: a prefix and 26 lowercase base32 characters that sort by creation time."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Every 10 bits as their two digits: an id is 13 lookups (CPython 3.11's base64.b32encode is
# written in Python, and made a batch of 1,000 runs spend 5 ms on its ids).
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_TIME_SHIFTS = (40, 30, 20, 10, 0)  # 50 bits: 48 of milliseconds, the top two zero
_RANDOM_SHIFTS = (70, 60, 50, 40, 30, 20, 10, 0)  # 80 random bits


def _digits(value: int, shifts: tuple[int, ...]) -> str:
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in shifts])


def new_id(prefix: str) -> str:
    """Return `prefix_` followed by 48 bits of milliseconds and 80 random bits."""
    return (f"{prefix}_{_digits(int(time.time() * 1000), _TIME_SHIFTS)}"
            f"{_digits(int.from_bytes(os.urandom(10), 'big'), _RANDOM_SHIFTS)}")


def new_ids(prefix: str, n: int) -> list[str]:
    """`n` ids of this millisecond (each with its own random bits), as `new_id` makes them."""
    head = f"{prefix}_{_digits(int(time.time() * 1000), _TIME_SHIFTS)}"
    randomness = os.urandom(10 * n)
    return [head + _digits(int.from_bytes(randomness[10 * i: 10 * i + 10], "big"), _RANDOM_SHIFTS)
            for i in range(n)]
