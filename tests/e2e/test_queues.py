"""Queue concurrency limits, shared queues and concurrency keys, in real workers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from slipstream_platform.store.environments import key_hash

from tests.e2e.conftest import Platform
from tests.e2e.test_runs import finished, trigger

pytestmark = pytest.mark.e2e


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The highest number of these runs that were executing at the same moment."""
    events = []
    for run in runs:
        attempt = run["attempts"][0]
        events.append((datetime.fromisoformat(attempt["startedAt"]), 1))
        events.append((datetime.fromisoformat(attempt["completedAt"]), -1))
    current = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        current += delta
        peak = max(peak, current)
    return peak


async def run_all(http: aiohttp.ClientSession, bodies: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    ids = [await trigger(http, task_id, body) for task_id, body in bodies]
    return [await finished(http, run_id) for run_id in ids]


async def test_a_task_queue_limit_of_one_runs_one_at_a_time(http: aiohttp.ClientSession) -> None:
    runs = await run_all(http, [("limited", {}) for _ in range(4)])
    assert all(r["status"] == "COMPLETED" and r["queue"] == "task/limited" for r in runs)
    assert most_at_once(runs) == 1


async def test_tasks_share_a_declared_queue(http: aiohttp.ClientSession) -> None:
    runs = await run_all(http, [("shared-a", {}), ("shared-b", {}), ("shared-a", {}), ("shared-b", {})])
    assert {r["queue"] for r in runs} == {"one-at-a-time"}
    assert most_at_once(runs) == 1


async def test_each_concurrency_key_gets_its_own_copy_of_the_queue(http: aiohttp.ClientSession) -> None:
    bodies = [("keyed", {"options": {"concurrencyKey": key}}) for key in ("tenant-a", "tenant-b") for _ in range(2)]
    runs = await run_all(http, bodies)
    by_key = {key: [r for r in runs if r["concurrencyKey"] == key] for key in ("tenant-a", "tenant-b")}
    assert all(most_at_once(group) == 1 for group in by_key.values())
    assert most_at_once(runs) == 2


async def test_a_trigger_can_pick_another_queue(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "echo", {"options": {"queue": {"name": "one-at-a-time"}}}))
    assert run["status"] == "COMPLETED" and run["queue"] == "one-at-a-time"


async def test_a_trigger_can_create_a_queue_with_its_limit(http: aiohttp.ClientSession, sdk: None) -> None:
    from slipstream import tasks

    body = {"options": {"queue": {"name": "main-branch", "concurrencyLimit": 1}}}
    runs = await run_all(http, [("echo", body) for _ in range(3)])
    assert all(r["status"] == "COMPLETED" and r["queue"] == "main-branch" for r in runs)
    assert most_at_once(runs) == 1
    # The SDK's spelling; a later limit replaces the earlier one.
    handle = await tasks.trigger("echo", None, queue={"name": "main-branch", "concurrency_limit": 2})
    await finished(http, handle.id)
    async with http.get("/api/v1/queues") as response:
        states = {q["name"]: q for q in (await response.json())["data"]}
    assert states["main-branch"]["concurrencyLimit"] == 2
    # A repeated request (the SDK retrying) finds the run it made, with the queue form too.
    headers = {"x-slipstream-request-id": f"queue-form-{handle.id}"}
    ids = []
    for _ in range(2):
        async with http.post("/api/v1/tasks/echo/trigger", json=body, headers=headers) as response:
            ids.append((await response.json())["id"])
    assert ids[0] == ids[1]
    for bad, status, message in [({"name": "q", "concurrencyLimit": -1}, 422, "queue.concurrencyLimit"),
                                 ({"name": "q", "limit": 1}, 400, "limit"), ({"name": ""}, 422, "queue.name")]:
        async with http.post("/api/v1/tasks/echo/trigger", json={"options": {"queue": bad}}) as response:
            assert response.status == status and message in (await response.json())["error"]
    with pytest.raises(TypeError, match="queue is a queue name or a dict"):
        await tasks.trigger("echo", None, queue={"nom": "x"})  # type: ignore[typeddict-item]


async def test_queues_are_registered_with_their_limits(platform: Platform) -> None:
    conn = await asyncpg.connect(platform.local.database_url)
    try:
        rows = await conn.fetch(
            "SELECT q.name, q.concurrency_limit FROM queues q JOIN api_keys k ON k.environment_id = q.environment_id"
            " WHERE k.key_hash = $1", key_hash(platform.key))
    finally:
        await conn.close()
    limits = {r["name"]: r["concurrency_limit"] for r in rows}
    assert limits["one-at-a-time"] == 1 and limits["task/limited"] == 1
    assert limits["declared-but-unused"] == 3 and limits["task/echo"] is None


async def test_pause_holds_a_queue_and_resume_releases_it(http: aiohttp.ClientSession) -> None:
    async with http.post("/api/v1/queues/task/pausable/pause") as response:
        assert response.status == 200 and (await response.json())["paused"] is True
    held = await trigger(http, "pausable", {})
    # A later run on another queue completes: dispatch passes ran, and skipped the paused queue.
    await finished(http, await trigger(http, "echo", {}))
    async with http.get("/api/v1/queues") as response:
        queues = {q["name"]: q for q in (await response.json())["data"]}
    assert queues["task/pausable"]["paused"] and queues["task/pausable"]["queued"] == 1
    assert queues["one-at-a-time"]["concurrencyLimit"] == 1
    async with http.post("/api/v1/queues/task/pausable/resume") as response:
        assert response.status == 200
    assert (await finished(http, held))["status"] == "COMPLETED"


async def test_environment_limits_over_the_api_and_the_cli(platform: Platform, http: aiohttp.ClientSession) -> None:
    import asyncio
    import os
    import sys
    from pathlib import Path

    async with http.get("/api/v1/environment") as response:
        before = await response.json()
    assert before["type"] == "DEVELOPMENT" and before["concurrencyLimit"] == 100 and before["burstFactor"] == 2.0
    async with http.patch("/api/v1/environment", json={"burstFactor": 0.5}) as response:
        assert response.status == 422 and "burstFactor" in (await response.json())["error"]
    async with http.patch("/api/v1/environment", json={"concurrencyLimit": 0}) as response:
        assert response.status == 422
    env = {**os.environ, "SLIPSTREAM_API_URL": platform.api_url, "SLIPSTREAM_SECRET_KEY": platform.key}
    cli = str(Path(sys.executable).parent / "slipstream")
    proc = await asyncio.create_subprocess_exec(cli, "limits", "--concurrency", "50", "--burst", "1.5", env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and b"concurrency limit 50, burst factor 1.5 (up to 75 runs at once)" in out
    async with http.get("/api/v1/environment") as response:
        assert (await response.json())["concurrencyLimit"] == 50
    proc = await asyncio.create_subprocess_exec(cli, "queues", env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and b"one-at-a-time" in out
    async with http.patch("/api/v1/environment", json={"concurrencyLimit": 100, "burstFactor": 2.0}) as response:
        assert response.status == 200


async def test_a_cap_across_keys_bounds_the_whole_queue(http: aiohttp.ClientSession) -> None:
    bodies = [("capped", {"options": {"concurrencyKey": f"tenant-{i % 4}"}}) for i in range(8)]
    runs = await run_all(http, bodies)
    assert all(r["status"] == "COMPLETED" for r in runs)
    by_key = {r["concurrencyKey"] for r in runs}
    assert all(most_at_once([r for r in runs if r["concurrencyKey"] == key]) == 1 for key in by_key)
    # Four keys with one slot each, but never more than two at once in the whole queue.
    assert most_at_once(runs) == 2
    async with http.get("/api/v1/queues") as response:
        queues = {q["name"]: q for q in (await response.json())["data"]}
    assert queues["task/capped"]["concurrencyLimit"] == 2 and queues["task/capped"]["perKeyLimit"] == 1
    assert queues["task/rated"]["rateLimit"] == {"limit": 3, "period": 2.0}


async def dequeue_times(platform: Platform, run_ids: list[str]) -> dict[str | None, list[float]]:
    """When each run was dispatched (Postgres's clock, seconds), per concurrency key, in order."""
    conn = await asyncpg.connect(platform.local.database_url)
    try:
        rows = await conn.fetch("SELECT concurrency_key, extract(epoch FROM dequeued_at) AS t FROM runs"
                                " WHERE id = ANY($1::text[]) ORDER BY dequeued_at", run_ids)
    finally:
        await conn.close()
    times: dict[str | None, list[float]] = {}
    for row in rows:
        times.setdefault(row["concurrency_key"], []).append(float(row["t"]))
    return times


async def test_a_rate_limit_spaces_the_starts_of_a_queue(platform: Platform, http: aiohttp.ClientSession) -> None:
    ids = [await trigger(http, "rated", {}) for _ in range(7)]
    assert [(await finished(http, run_id))["status"] for run_id in ids] == ["COMPLETED"] * 7
    starts = (await dequeue_times(platform, ids))[None]
    # At most 3 starts in any 2 s: the 4th start after any start is 2 s later (the claim's
    # window counts from after the environment lock, the dispatch time from before it).
    assert all(later - earlier >= 1.9 for earlier, later in zip(starts, starts[3:], strict=False))


async def test_a_per_key_rate_limit_spaces_each_key(platform: Platform, http: aiohttp.ClientSession) -> None:
    ids = [await trigger(http, "rated-per-key", {"options": {"concurrencyKey": key}}) for key in "abab"]
    assert [(await finished(http, run_id))["status"] for run_id in ids] == ["COMPLETED"] * 4
    times = await dequeue_times(platform, ids)
    assert sorted(times) == ["a", "b"]
    assert all(later - earlier >= 0.9 for starts in times.values() for earlier, later in zip(starts, starts[1:],
                                                                                              strict=False))


async def test_a_parent_waiting_on_children_in_its_own_limit_one_queue_does_not_deadlock(
    http: aiohttp.ClientSession,
) -> None:
    parent = await finished(http, await trigger(http, "solo-parent", {}))
    assert parent["status"] == "COMPLETED" and parent["queue"] == "one-at-a-time"
    children = [await finished(http, child) for child in parent["output"]]
    assert [c["status"] for c in children] == ["COMPLETED", "COMPLETED"]
    assert all(c["queue"] == "one-at-a-time" and c["parentRunId"] == parent["id"] for c in children)
