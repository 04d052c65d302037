"""Rate limits of the HTTP API per key (`SLIPSTREAM_RATE_LIMIT`, off by default): a token bucket
for each credential that calls, in each trigger-api process. Every answer to a counted request
says where its key stands (`x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`:
Unix milliseconds when the bucket is full again); one over the limit is a 429 with `Retry-After`."""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware
from slipstream_core.durations import parse_duration

from slipstream_platform.http import Handler, json_response

_RATE = re.compile(r"^(\d+)/(\S+)$")
# Buckets kept at most: the least recently used go first (a bucket left alone refills anyway).
MAX_KEYS = 100_000


class RateLimit(msgspec.Struct, frozen=True):
    """`limit` requests per `window` (its text, for messages), refilled evenly."""

    limit: int
    window_seconds: float
    window: str


def parse(text: str) -> RateLimit | None:
    """`""` (no limit) or `N/DURATION`, as `1500/1m` or `20/1s`; ValueError says what is wrong."""
    text = text.strip()
    if not text:
        return None
    match = _RATE.match(text.replace(" ", ""))
    if match is None:
        raise ValueError("write it as requests/duration, e.g. 1500/1m")
    limit = int(match[1])
    seconds = parse_duration(match[2]).total_seconds()
    if limit < 1 or seconds <= 0:
        raise ValueError("needs at least 1 request per a duration over 0")
    return RateLimit(limit, seconds, match[2])


class Buckets:
    """A token bucket per key: `limit` tokens, refilled at limit / window per second."""

    def __init__(self, rate: RateLimit, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.per_second = rate.limit / rate.window_seconds
        self.max_keys = max_keys
        self.buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def take(self, key: bytes, now: float) -> tuple[bool, float, float, float]:
        """Spend a token of `key` if it has one: (allowed, tokens left, seconds until full,
        seconds until the next token)."""
        tokens, at = self.buckets.pop(key, (float(self.rate.limit), now))
        tokens = min(float(self.rate.limit), tokens + (now - at) * self.per_second)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self.buckets[key] = (tokens, now)
        if len(self.buckets) > self.max_keys:
            self.buckets.popitem(last=False)
        until_full = (self.rate.limit - tokens) / self.per_second
        until_next = 0.0 if tokens >= 1 else (1 - tokens) / self.per_second
        return allowed, tokens, until_full, until_next


def rate_limits(rate: RateLimit) -> Middleware:
    """A middleware that counts each request with a bearer credential against that credential's
    bucket (requests without one, which reach only public paths or get a 401, are not counted)."""
    buckets = Buckets(rate)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return await handler(request)
        key = hashlib.blake2b(credential.encode(), digest_size=16).digest()
        allowed, tokens, until_full, until_next = buckets.take(key, time.monotonic())
        headers = {
            "x-ratelimit-limit": str(rate.limit),
            "x-ratelimit-remaining": str(math.floor(tokens)),
            "x-ratelimit-reset": str(math.ceil((time.time() + until_full) * 1000)),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(until_next)))
            return json_response({"error": f"rate limit exceeded: {rate.limit} requests per {rate.window} for"
                                           f" this key; retry in {until_next:.2f} s"}, 429, headers)
        response = await handler(request)
        if not response.prepared:
            response.headers.update(headers)
        return response

    return middleware
