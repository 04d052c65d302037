"""Runs through the whole platform, driven over HTTP and the SDK like a user would."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import slipstream
from slipstream import runs, tasks
from slipstream.errors import AuthenticationError, NotFoundError

from tests.conftest import eventually
from tests.e2e.conftest import Platform
from tests.e2e.tasks.sample import echo

pytestmark = pytest.mark.e2e


async def trigger(http: aiohttp.ClientSession, task_id: str, body: dict[str, Any]) -> str:
    async with http.post(f"/api/v1/tasks/{task_id}/trigger", json=body) as response:
        assert response.status == 200, await response.text()
        answer = await response.json()
    assert answer["isCached"] is False and answer["id"].startswith("run_")
    return str(answer["id"])


async def get_run(http: aiohttp.ClientSession, run_id: str) -> dict[str, Any]:
    async with http.get(f"/api/v3/runs/{run_id}") as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def finished(http: aiohttp.ClientSession, run_id: str, timeout: float = 30) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        run = await get_run(http, run_id)
        return run if run["isCompleted"] else None

    return await eventually(probe, timeout=timeout, message=f"run {run_id} did not finish")


async def test_trigger_over_http_and_read_the_output(http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "echo", {"payload": {"name": "Ada"}, "options": {"tags": ["t1", "t2"]}})
    run = await finished(http, run_id)
    assert run["status"] == "COMPLETED"
    assert run["output"] == {"payload": {"name": "Ada"}, "run": run_id, "task": "echo", "attempt": 1,
                             "env": "DEVELOPMENT", "queue": "task/echo", "machine": "small-1x"}
    assert run["taskIdentifier"] == "echo" and run["payload"] == {"name": "Ada"}
    assert run["tags"] == ["t1", "t2"]
    assert run["attemptCount"] == 1 and [a["status"] for a in run["attempts"]] == ["COMPLETED"]
    assert run["isSuccess"] and not run["isFailed"] and not run["isQueued"] and not run["isExecuting"]
    assert run["startedAt"] and run["finishedAt"] and run["createdAt"] <= run["startedAt"] <= run["finishedAt"]


async def test_sync_tasks_run_too(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "echo-sync", {"payload": [1, 2]}))
    assert run["output"] == {"sync": True, "payload": [1, 2]}


async def test_sdk_trigger_retrieve_and_subscribe(sdk: None) -> None:
    handle = await echo.trigger({"name": "Grace"})
    seen = [run.status async for run in runs.subscribe_to_run(handle.id)]
    assert seen[-1] == "COMPLETED"
    assert all(s in {"QUEUED", "DEQUEUED", "EXECUTING", "COMPLETED"} for s in seen)
    assert all(a != b for a, b in zip(seen, seen[1:], strict=False)), seen
    run = await runs.retrieve(handle.id)
    assert isinstance(run, slipstream.Run)
    assert run.is_success and run.output["payload"] == {"name": "Grace"}
    by_id = await tasks.trigger("echo", {"name": "Linus"}, tags="sdk", metadata={"k": "v"})
    last = [run async for run in runs.subscribe_to_run(by_id.id)][-1]
    assert last.output["payload"] == {"name": "Linus"} and last.tags == ["sdk"]


async def test_retries_until_an_attempt_succeeds(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "flaky", {"payload": {"succeed_on": 3}}))
    assert run["status"] == "COMPLETED" and run["output"] == "ok on attempt 3"
    assert run["error"] is None
    assert [a["status"] for a in run["attempts"]] == ["FAILED", "FAILED", "COMPLETED"]
    assert run["attempts"][0]["error"]["message"] == "attempt 1 failed on purpose"
    assert run["attempts"][0]["error"]["name"] == "RuntimeError"


async def test_fails_after_the_last_attempt_and_max_attempts_overrides(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "always-fails", {"payload": None}))
    assert run["status"] == "FAILED" and run["attemptCount"] == 3
    assert run["error"]["name"] == "ValueError" and "always fails" in run["error"]["message"]
    assert "Traceback" in run["error"]["stackTrace"]
    assert run["isFailed"] and run["isCompleted"] and not run["isSuccess"]
    once = await finished(http, await trigger(http, "always-fails", {"options": {"maxAttempts": 1}}))
    assert once["status"] == "FAILED" and once["attemptCount"] == 1


async def test_output_that_is_not_json_fails_clearly_without_retry(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "bad-output", {}))
    assert run["status"] == "FAILED" and run["attemptCount"] == 1
    assert run["error"]["name"] == "OutputNotSerializableError"
    assert "not JSON-serializable" in run["error"]["message"]


async def test_a_crashing_worker_process_ends_the_run_crashed_and_is_replaced(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "crash", {}))
    assert run["status"] == "CRASHED" and run["attemptCount"] == 1
    assert "exited with code 3" in run["error"]["message"]
    assert run["isFailed"]
    # The pool still has all its processes: several runs at once still complete.
    ids = [await trigger(http, "echo", {"payload": i}) for i in range(8)]
    for run_id in ids:
        assert (await finished(http, run_id))["status"] == "COMPLETED"


async def test_a_task_triggers_another_task(http: aiohttp.ClientSession) -> None:
    parent = await finished(http, await trigger(http, "parent", {"payload": {}}))
    child = await finished(http, parent["output"]["child"])
    assert child["output"]["payload"] == {"from": parent["id"]}


async def test_delayed_run_waits_then_runs(http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "echo", {"payload": 1, "options": {"delay": "1s"}})
    first = await get_run(http, run_id)
    assert first["status"] == "DELAYED" and first["delayedUntil"] and first["isQueued"]
    run = await finished(http, run_id)
    assert run["status"] == "COMPLETED" and run["startedAt"] >= first["delayedUntil"]


async def test_pending_version_until_a_worker_registers_it(platform: Platform, http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "late-task", {"payload": {"n": 1}})
    assert (await get_run(http, run_id))["status"] == "PENDING_VERSION"
    # `slipstream worker` serves a module against the running platform, set up by variables.
    env = platform.local.env_for("supervisor", {"SLIPSTREAM_SECRET_KEY": platform.key})
    env["SLIPSTREAM_HTTP_PORT"] = "0"
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "slipstream"), "worker", "--tasks", "tests.e2e.late_tasks",
         "--concurrency", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        run = await finished(http, run_id)
        assert run["status"] == "COMPLETED" and run["output"] == {"late": True, "payload": {"n": 1}}
    finally:
        worker.terminate()
        assert worker.wait(30) == 0


async def test_a_key_sees_only_its_environment(platform: Platform, http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "echo", {"payload": 1})
    prod_headers = platform.headers(platform.keys["PRODUCTION"])
    async with aiohttp.ClientSession(base_url=platform.api_url, headers=prod_headers) as prod:
        async with prod.get(f"/api/v3/runs/{run_id}") as response:
            assert response.status == 404
            assert await response.json() == {"error": "Run not found"}


async def test_sdk_errors_are_typed(platform: Platform, sdk: None) -> None:
    with pytest.raises(NotFoundError):
        await runs.retrieve("run_doesnotexist")
    with pytest.raises(NotFoundError):
        async for _ in runs.subscribe_to_run("run_doesnotexist"):
            pass
    slipstream.configure(api_url=platform.api_url, secret_key="sk_dev_wrong", realtime_url=platform.realtime_url)
    with pytest.raises(AuthenticationError):
        await tasks.trigger("echo", {})
    with pytest.raises(AuthenticationError):
        async for _ in runs.subscribe_to_run("run_x"):
            pass


async def test_every_service_reports_healthy(platform: Platform) -> None:
    async with aiohttp.ClientSession() as session:
        for key, port in platform.local.ports.items():
            if key not in platform.local.processes:
                continue
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200, key
                assert (await response.json())["status"] == "ok"


async def test_sigterm_lets_a_running_attempt_finish(platform: Platform, http: aiohttp.ClientSession) -> None:
    platform.local.start_service("supervisor", {"SLIPSTREAM_TASKS": "tests.e2e.tasks",
                                                "SLIPSTREAM_SECRET_KEY": platform.key,
                                                "SLIPSTREAM_CONCURRENCY": "1"}, key="supervisor-drain")
    platform.local.wait_healthy(["supervisor-drain"])
    # Stop the main supervisor so the long run lands on the one we terminate.
    platform.local.stop_service("supervisor")
    try:
        run_id = await trigger(http, "sleepy", {"payload": {"seconds": 1.5}})

        async def executing() -> bool:
            return (await get_run(http, run_id))["status"] == "EXECUTING"

        await eventually(executing, message="run executing")
        proc = platform.local.processes["supervisor-drain"]
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 30) == 0
        run = await get_run(http, run_id)
        assert run["status"] == "COMPLETED" and run["attemptCount"] == 1
    finally:
        platform.local.stop_service("supervisor-drain")
        platform.local.start_service("supervisor", {"SLIPSTREAM_TASKS": "tests.e2e.tasks",
                                                    "SLIPSTREAM_SECRET_KEY": platform.key,
                                                    "SLIPSTREAM_CONCURRENCY": "4"})
        platform.local.wait_healthy(["supervisor"])
