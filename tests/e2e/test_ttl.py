"""Time-to-live: a run that does not start in time ends EXPIRED (counted from when it is enqueued)."""

from __future__ import annotations

from datetime import datetime

import aiohttp
import pytest

from tests.e2e.conftest import Platform
from tests.e2e.test_runs import finished, get_run, trigger

pytestmark = pytest.mark.e2e


async def test_a_run_nobody_starts_expires(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "late-task", {"payload": 1, "options": {"ttl": "1s"}}))
    assert run["status"] == "EXPIRED" and run["attemptCount"] == 0 and run["ttl"] == "1s"
    assert run["isFailed"] and run["isCompleted"] and run["expiredAt"]
    assert run["error"]["name"] == "TaskRunExpiredError"


async def test_ttl_counts_from_the_end_of_the_delay(http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "late-task", {"payload": 2, "options": {"delay": "1s", "ttl": 1}})
    run = await finished(http, run_id)
    assert run["status"] == "EXPIRED"
    expired = datetime.fromisoformat(run["expiredAt"])
    assert (expired - datetime.fromisoformat(run["delayedUntil"])).total_seconds() >= 1


async def test_a_run_that_starts_in_time_is_not_expired(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "echo", {"payload": 3, "options": {"ttl": "1m"}}))
    assert run["status"] == "COMPLETED" and run["ttl"] == "60s" and run["expiredAt"] is None


async def test_development_runs_get_a_default_ttl(platform: Platform, http: aiohttp.ClientSession) -> None:
    dev = await get_run(http, await trigger(http, "late-task", {"payload": 4}))
    assert dev["ttl"] == "600s"
    headers = platform.headers(platform.keys["PRODUCTION"])
    async with aiohttp.ClientSession(base_url=platform.api_url, headers=headers) as prod:
        async with prod.post("/api/v1/tasks/late-task/trigger", json={}) as response:
            run_id = (await response.json())["id"]
        async with prod.get(f"/api/v3/runs/{run_id}") as response:
            assert (await response.json())["ttl"] is None


@pytest.mark.parametrize(("ttl", "status"), [("soon", 400), (0, 422), ("0s", 422)])
async def test_bad_ttl(http: aiohttp.ClientSession, ttl: object, status: int) -> None:
    async with http.post("/api/v1/tasks/echo/trigger", json={"options": {"ttl": ttl}}) as response:
        assert response.status == status
        assert "ttl" in (await response.json())["error"]
