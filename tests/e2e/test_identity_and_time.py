"""Idempotency keys, debounce and reschedule, over HTTP and from inside tasks."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from slipstream import runs

from tests.conftest import eventually
from tests.e2e.test_cancel import until_logged
from tests.e2e.test_runs import finished, get_run

pytestmark = pytest.mark.e2e


async def post(http: aiohttp.ClientSession, task_id: str, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with http.post(f"/api/v1/tasks/{task_id}/trigger", json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def test_one_run_per_key_even_under_concurrent_triggers(http: aiohttp.ClientSession) -> None:
    key = f"order-{uuid.uuid4()}"
    answers = await asyncio.gather(*(post(http, "echo", {"payload": i, "options": {"idempotencyKey": key}})
                                     for i in range(20)))
    assert len({a["id"] for a in answers}) == 1
    assert sorted(a["isCached"] for a in answers) == [False] + [True] * 19
    run = await finished(http, answers[0]["id"])
    assert run["idempotencyKey"] == key
    # The header works too, and a completed run is still returned.
    again = await post(http, "echo", {"payload": "x"}, headers={"idempotency-key": key})
    assert again == {"id": answers[0]["id"], "isCached": True}


async def test_a_failed_run_keeps_its_key_until_reset(http: aiohttp.ClientSession) -> None:
    key = f"k-{uuid.uuid4()}"
    first = await post(http, "always-fails", {"options": {"idempotencyKey": key, "maxAttempts": 1}})
    assert (await finished(http, first["id"]))["status"] == "FAILED"
    # As the seed: the finished run (and its error) is the answer until the key expires or is reset.
    second = await post(http, "always-fails", {"options": {"idempotencyKey": key, "maxAttempts": 1}})
    assert second == {"id": first["id"], "isCached": True}
    async with http.post(f"/api/v1/idempotencyKeys/{key}/reset", json={"taskIdentifier": "always-fails"}) as response:
        assert response.status == 200
    third = await post(http, "always-fails", {"options": {"idempotencyKey": key, "maxAttempts": 1}})
    assert third["id"] != first["id"] and not third["isCached"]
    ok = await post(http, "echo", {"options": {"idempotencyKey": key}})
    assert (await finished(http, ok["id"]))["status"] == "COMPLETED"
    async with http.post(f"/api/v1/idempotencyKeys/{key}/reset", json={"taskIdentifier": "echo"}) as response:
        assert response.status == 200
    fresh = await post(http, "echo", {"options": {"idempotencyKey": key}})
    assert fresh["id"] != ok["id"] and not fresh["isCached"]
    async with http.post("/api/v1/idempotencyKeys/nope/reset", json={"taskIdentifier": "echo"}) as response:
        assert response.status == 404


async def test_a_key_expires_after_its_ttl(http: aiohttp.ClientSession) -> None:
    key = f"short-{uuid.uuid4()}"
    first = await post(http, "echo", {"options": {"idempotencyKey": key, "idempotencyKeyTTL": "1s"}})

    async def new_run() -> bool:
        again = await post(http, "echo", {"options": {"idempotencyKey": key, "idempotencyKeyTTL": "1s"}})
        return again["id"] != first["id"]

    await eventually(new_run, interval=0.3, message="a new run after the key expired")


async def test_a_client_retry_with_the_same_request_id_makes_no_second_run(http: aiohttp.ClientSession) -> None:
    headers = {"x-slipstream-request-id": uuid.uuid4().hex}
    first = await post(http, "echo", {"payload": 1}, headers=headers)
    retried = await post(http, "echo", {"payload": 1}, headers=headers)
    assert retried == {"id": first["id"], "isCached": True}
    assert (await get_run(http, first["id"]))["idempotencyKey"] is None


async def test_run_scoped_keys_survive_retries_attempt_scoped_do_not(http: aiohttp.ClientSession) -> None:
    run = await finished(http, (await post(http, "idempotent-parent", {}))["id"])
    assert run["status"] == "COMPLETED" and run["attemptCount"] == 2
    lines = await until_logged(http, run["id"], "children")
    children = [line["attributes"] for line in lines if line["message"] == "children"]
    assert children[0]["by_run"] == children[1]["by_run"] == run["output"]["by_run"]
    assert children[0]["by_attempt"] != children[1]["by_attempt"]


async def test_trigger_and_wait_on_a_finished_keyed_run_returns_its_output(http: aiohttp.ClientSession) -> None:
    key = f"keyed-{uuid.uuid4()}"
    existing = await post(http, "echo", {"payload": {"keyed": True}, "options": {"idempotencyKey": key}})
    await finished(http, existing["id"])
    run = await finished(http, (await post(http, "waits-on-keyed-child", {"payload": {"key": key}}))["id"])
    assert run["status"] == "COMPLETED" and run["output"]["id"] == existing["id"]
    assert run["output"]["output"]["payload"] == {"keyed": True}


async def test_debounce_leading_keeps_the_first_payload_and_pushes_the_start(http: aiohttp.ClientSession) -> None:
    key = f"user-{uuid.uuid4()}"
    options = {"debounce": {"key": key, "delay": "2s"}}
    first = await post(http, "echo", {"payload": {"n": 1}, "options": options})
    before = (await get_run(http, first["id"]))["delayedUntil"]
    await asyncio.sleep(0.3)  # let time pass so the push is visible
    second = await post(http, "echo", {"payload": {"n": 2}, "options": options})
    assert second == {"id": first["id"], "isCached": True}
    run = await get_run(http, first["id"])
    assert run["status"] == "DELAYED" and run["delayedUntil"] > before
    done = await finished(http, first["id"])
    assert done["output"]["payload"] == {"n": 1}
    # Once it has started, the same key makes a new run.
    third = await post(http, "echo", {"payload": {"n": 3}, "options": options})
    assert third["id"] != first["id"] and not third["isCached"]


async def test_debounce_trailing_runs_with_the_last_data(http: aiohttp.ClientSession) -> None:
    key = f"doc-{uuid.uuid4()}"
    options: dict[str, Any] = {"debounce": {"key": key, "delay": "1s", "mode": "trailing"}}
    first = await post(http, "echo", {"payload": {"v": 1}, "options": {**options, "tags": ["a"]}})
    second = await post(http, "echo", {"payload": {"v": 2}, "options": {**options, "tags": ["b"]}})
    assert second["id"] == first["id"]
    done = await finished(http, first["id"])
    assert done["output"]["payload"] == {"v": 2} and done["tags"] == ["b"]


async def test_debounce_max_delay_bounds_the_push(http: aiohttp.ClientSession) -> None:
    key = f"burst-{uuid.uuid4()}"
    options = {"debounce": {"key": key, "delay": "1h", "maxDelay": "2s"}}
    first = await post(http, "echo", {"payload": 1, "options": options})
    created = datetime.fromisoformat((await get_run(http, first["id"]))["createdAt"])
    await post(http, "echo", {"payload": 2, "options": options})
    run = await get_run(http, first["id"])
    assert (datetime.fromisoformat(run["delayedUntil"]) - created).total_seconds() <= 2.5
    assert (await finished(http, first["id"]))["status"] == "COMPLETED"


async def test_reschedule_a_delayed_run(http: aiohttp.ClientSession, sdk: None) -> None:
    run_id = (await post(http, "echo", {"payload": 1, "options": {"delay": "1h"}}))["id"]
    moved = await runs.reschedule(run_id, delay="1s")
    assert moved.status == "DELAYED" and moved.delayed_until is not None
    assert (await finished(http, run_id))["status"] == "COMPLETED"
    async with http.post(f"/api/v1/runs/{run_id}/reschedule", json={"delay": "1m"}) as response:
        assert response.status == 400
        assert await response.json() == {"error": "Cannot reschedule a run that is not delayed"}
    async with http.post("/api/v1/runs/run_nope/reschedule", json={"delay": "1m"}) as response:
        assert response.status == 404
    async with http.post(f"/api/v1/runs/{run_id}/reschedule", json={"delay": "whenever"}) as response:
        assert response.status == 400


async def test_idempotency_wins_over_debounce(http: aiohttp.ClientSession) -> None:
    key, debounce_key = f"idem-{uuid.uuid4()}", f"deb-{uuid.uuid4()}"
    done = await post(http, "echo", {"payload": 1, "options": {"idempotencyKey": key}})
    await finished(http, done["id"])
    both = await post(http, "echo", {"payload": 2, "options": {"idempotencyKey": key,
                                                               "debounce": {"key": debounce_key, "delay": "5s"}}})
    assert both == {"id": done["id"], "isCached": True}
