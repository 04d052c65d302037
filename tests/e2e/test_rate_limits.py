"""Rate limits per key (`SLIPSTREAM_RATE_LIMIT`) on a trigger-api of their own, started for this
module beside the test platform's: counts in every answer, a 429 past the limit, and the SDK
waiting for the reset instead of failing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import slipstream
from slipstream import tasks
from slipstream.errors import RateLimitError
from slipstream_platform.embedded import free_port

from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e

LIMIT = 5


@pytest.fixture(scope="module")
def limited_api(platform: Platform) -> Iterator[str]:
    port = free_port()
    platform.local.start_service("trigger_api", {"SLIPSTREAM_HTTP_PORT": str(port),
                                                 "SLIPSTREAM_RATE_LIMIT": f"{LIMIT}/2s"}, key="trigger-api-limited")
    try:
        platform.local.wait_healthy(["trigger-api-limited"])
        yield f"http://127.0.0.1:{port}"
    finally:
        platform.local.stop_service("trigger-api-limited")


@pytest.fixture
async def limited(limited_api: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=limited_api) as session:
        yield session


async def test_answers_count_down_then_429_per_key(platform: Platform, limited: aiohttp.ClientSession) -> None:
    key = platform.keys["STAGING"]
    remaining = []
    for _ in range(LIMIT):
        async with limited.get("/api/v3/runs/run_nope", headers=platform.headers(key)) as response:
            assert response.status == 404  # the answer itself is unchanged
            assert response.headers["x-ratelimit-limit"] == str(LIMIT)
            remaining.append(int(response.headers["x-ratelimit-remaining"]))
            reset = int(response.headers["x-ratelimit-reset"])
    assert remaining[0] == LIMIT - 1 and remaining[-1] == 0 and remaining == sorted(remaining, reverse=True)
    assert time.time() * 1000 < reset <= time.time() * 1000 + 2_500
    async with limited.get("/api/v3/runs/run_nope", headers=platform.headers(key)) as response:
        assert response.status == 429
        assert "rate limit exceeded: 5 requests per 2s" in (await response.json())["error"]
        assert response.headers["x-ratelimit-remaining"] == "0" and int(response.headers["Retry-After"]) >= 1
    # Another key has its own bucket; requests without a key are not counted.
    async with limited.get("/api/v3/runs/run_nope", headers=platform.headers(platform.keys["PREVIEW"])) as response:
        assert response.status == 404 and response.headers["x-ratelimit-remaining"] == str(LIMIT - 1)
    async with limited.get("/api/v1/timezones") as response:
        assert response.status == 200 and "x-ratelimit-limit" not in response.headers
    # The bucket refills: 2 s for all five, so one token after 0.4 s.
    async def allowed_again() -> bool:
        async with limited.get("/api/v3/runs/run_nope", headers=platform.headers(key)) as response:
            return response.status == 404

    deadline = time.monotonic() + 10
    while not await allowed_again():
        assert time.monotonic() < deadline, "the bucket did not refill"
        await asyncio.sleep(0.1)


async def test_the_sdk_waits_for_the_reset(platform: Platform, limited_api: str) -> None:
    slipstream.configure(api_url=limited_api, secret_key=platform.key)
    try:
        started = time.monotonic()
        handles = [await tasks.trigger("echo", {"n": n}) for n in range(LIMIT + 2)]
        # Two over the limit: the SDK waited (Retry-After, at least a second) instead of raising.
        assert len({h.id for h in handles}) == LIMIT + 2 and time.monotonic() - started >= 1
    finally:
        import slipstream._config as config

        config._override = None


def test_rate_limit_error_is_the_typed_429() -> None:
    from slipstream.errors import ApiError, api_error

    error = api_error(429, "rate limit exceeded")
    assert isinstance(error, RateLimitError) and isinstance(error, ApiError) and error.status == 429
