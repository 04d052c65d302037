"""Ids: a prefix and 26 lowercase base32 characters that sort by creation time."""

from __future__ import annotations

import base64
import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# base64's base32 digits, mapped to ours: the encoding is done in C (a take asks for 16 ids).
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def new_id(prefix: str) -> str:
    """Return `prefix_` followed by 48 bits of milliseconds and 80 random bits."""
    return new_ids(prefix, 1)[0]


def new_ids(prefix: str, n: int) -> list[str]:
    """`n` ids of this millisecond (each with its own random bits), as `new_id` makes them."""
    # The 26 digits are 10 of time (50 bits, the top two zero) and 16 of randomness (80 bits,
    # 10 bytes: base32 encodes each 10 bytes into 16 digits of their own).
    ms = int(time.time() * 1000)
    head = f"{prefix}_{base64.b32encode((ms << 30).to_bytes(10, 'big'))[:10].translate(_FROM_RFC4648).decode()}"
    tails = base64.b32encode(os.urandom(10 * n)).translate(_FROM_RFC4648).decode()
    return [head + tails[16 * i: 16 * i + 16] for i in range(n)]
