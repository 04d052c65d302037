"""Environment isolation (issue 14): a key of one environment never reads, lists, changes or
subscribes to anything of another; it gets 404 (as for an id that does not exist), never 403,
so ids do not leak."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


async def send(platform: Platform, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession(base_url=platform.api_url) as session:
        async with session.request(method, path, json=body, headers=platform.headers(key)) as r:
            return r.status, await r.json()


async def first_message(platform: Platform, key: str, path: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{platform.realtime_url}{path}",
                                      headers=platform.headers(key)) as ws:
            message = await ws.receive_json(timeout=15)
            return dict(message)


async def test_another_environment_sees_nothing_and_gets_404(platform: Platform) -> None:
    dev, prod = platform.keys["DEVELOPMENT"], platform.keys["PRODUCTION"]
    tag = f"isolated-{uuid.uuid4().hex[:8]}"
    status, run = await send(platform, dev, "POST", "/api/v1/tasks/echo/trigger",
                             {"payload": {"secret": 1}, "options": {"delay": "1h", "tags": [tag],
                                                                     "idempotencyKey": tag}})
    assert status == 200, run
    status, batch = await send(platform, dev, "POST", "/api/v1/tasks/echo/batch",
                               {"items": [{"payload": {"i": 1}, "options": {"delay": "1h"}}]})
    assert status == 202, batch
    status, schedule = await send(platform, dev, "POST", "/api/v1/schedules",
                                  {"task": "per-tenant-report", "cron": "0 9 * * 1", "deduplicationKey": tag})
    assert status == 200, schedule
    run_id, batch_id, schedule_id = run["id"], batch["id"], schedule["id"]

    probes: list[tuple[str, str, Any]] = [
        ("GET", f"/api/v3/runs/{run_id}", None),
        ("GET", f"/api/v1/runs/{run_id}/logs", None),
        ("GET", f"/api/v1/runs/{run_id}/spans", None),
        ("POST", f"/api/v2/runs/{run_id}/cancel", None),
        ("POST", f"/api/v1/runs/{run_id}/replay", None),
        ("POST", f"/api/v1/runs/{run_id}/reschedule", {"delay": "2h"}),
        ("POST", f"/api/v1/runs/{run_id}/tags", {"tags": ["stolen"]}),
        ("PUT", f"/api/v1/runs/{run_id}/metadata", {"metadata": {"stolen": True}}),
        ("POST", f"/api/v1/runs/{run_id}/steps", {"seq": 0, "name": "x", "attemptNumber": 1, "result": 1}),
        ("GET", f"/api/v2/batches/{batch_id}", None),
        ("POST", f"/api/v2/batches/{batch_id}/items", {"items": [{"task": "echo", "payload": 1}]}),
        ("GET", f"/api/v1/schedules/{schedule_id}", None),
        ("PUT", f"/api/v1/schedules/{schedule_id}", {"task": "per-tenant-report", "cron": "0 10 * * 1"}),
        ("POST", f"/api/v1/schedules/{schedule_id}/deactivate", None),
        ("POST", f"/api/v1/schedules/{schedule_id}/activate", None),
        ("DELETE", f"/api/v1/schedules/{schedule_id}", None),
    ]
    for method, path, body in probes:
        status, answer = await send(platform, prod, method, path, body)
        assert status == 404 and "error" in answer, (method, path, status, answer)

    # Listings of the other environment do not show them.
    status, listed = await send(platform, prod, "GET", f"/api/v1/runs?filter[tag]={tag}")
    assert status == 200 and listed["data"] == []
    status, listed = await send(platform, prod, "GET", f"/api/v1/runs?filter[batch]={batch_id}")
    assert status == 200 and listed["data"] == []
    status, schedules = await send(platform, prod, "GET", "/api/v1/schedules?perPage=100")
    assert status == 200 and schedule_id not in {s["id"] for s in schedules["data"]}
    # Its idempotency key is its own: the same key in another environment makes another run.
    status, other = await send(platform, prod, "POST", "/api/v1/tasks/echo/trigger",
                               {"payload": {}, "options": {"delay": "1h", "idempotencyKey": tag}})
    assert status == 200 and other["id"] != run_id

    # Realtime: a run or batch of another environment is "not found".
    for path in (f"/realtime/v1/runs/{run_id}", f"/realtime/v1/batches/{batch_id}"):
        message = await first_message(platform, prod, path)
        assert message.get("type") == "error" and message["status"] == 404, (path, message)

    # Nothing of the first environment changed.
    status, still = await send(platform, dev, "GET", f"/api/v3/runs/{run_id}")
    assert status == 200 and still["status"] == "DELAYED" and still["tags"] == [tag] and not still.get("metadata")
    status, kept = await send(platform, dev, "GET", f"/api/v1/schedules/{schedule_id}")
    assert status == 200 and kept["active"] and kept["generator"]["expression"] == "0 9 * * 1"
    for key, made in ((dev, run_id), (prod, other["id"])):
        await send(platform, key, "POST", f"/api/v2/runs/{made}/cancel")
    await send(platform, dev, "DELETE", f"/api/v1/schedules/{schedule_id}")


@pytest.mark.parametrize("feed", ["/realtime/v1/runs", "/realtime/v1/runs?tags={tag}"],
                         ids=["every run of the environment", "runs with a tag"])
async def test_a_feed_of_one_environment_never_carries_a_run_of_another(platform: Platform, feed: str) -> None:
    dev, prod = platform.keys["DEVELOPMENT"], platform.keys["PRODUCTION"]
    tag = f"feed-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"{platform.realtime_url}{feed.format(tag=tag)}", headers=platform.headers(prod)) as ws:
        # The other environment's run first, then one of the feed's own: the own one arrives, the other never.
        _, theirs = await send(platform, dev, "POST", "/api/v1/tasks/echo/trigger",
                               {"payload": {}, "options": {"delay": "1h", "tags": [tag]}})
        _, ours = await send(platform, prod, "POST", "/api/v1/tasks/echo/trigger",
                             {"payload": {}, "options": {"delay": "1h", "tags": [tag]}})
        seen: list[str] = []
        while ours["id"] not in seen:
            message = await ws.receive_json(timeout=15)
            assert message["type"] == "run", message
            seen.append(message["run"]["id"])
        assert theirs["id"] not in seen
    for key, made in ((dev, theirs["id"]), (prod, ours["id"])):
        await send(platform, key, "POST", f"/api/v2/runs/{made}/cancel")
