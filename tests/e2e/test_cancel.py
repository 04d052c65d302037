"""Canceling runs: queued ones at once, executing ones with their signal and on_cancel, children too."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import pytest
from slipstream import runs

from tests.conftest import eventually
from tests.e2e.conftest import Platform
from tests.e2e.test_lifecycle import logs_of, messages
from tests.e2e.test_runs import finished, get_run, trigger

pytestmark = pytest.mark.e2e


async def cancel(http: aiohttp.ClientSession, run_id: str) -> None:
    async with http.post(f"/api/v2/runs/{run_id}/cancel") as response:
        assert response.status == 200, await response.text()
        assert await response.json() == {"id": run_id}


async def until_logged(http: aiohttp.ClientSession, run_id: str, message: str) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        lines = await logs_of(http, run_id)
        return lines if message in messages(lines) else None

    return await eventually(probe, message=f"{message!r} logged by {run_id}")


async def test_cancel_a_delayed_run_at_once_and_idempotently(http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "echo", {"payload": 1, "options": {"delay": "1h"}})
    await cancel(http, run_id)
    run = await get_run(http, run_id)
    assert run["status"] == "CANCELED" and run["isCancelled"] and run["isCompleted"] and not run["isFailed"]
    assert run["attemptCount"] == 0
    await cancel(http, run_id)
    assert (await get_run(http, run_id))["status"] == "CANCELED"
    async with http.post("/api/v2/runs/run_nope/cancel") as response:
        assert response.status == 404


async def test_a_finished_run_stays_finished(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "echo", {"payload": 2}))
    await cancel(http, run["id"])
    assert (await get_run(http, run["id"]))["status"] == "COMPLETED"


async def test_cancel_an_executing_run(http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "cancellable", {})
    await until_logged(http, run_id, "started")
    await cancel(http, run_id)
    run = await get_run(http, run_id)
    assert run["status"] == "CANCELED" and [a["status"] for a in run["attempts"]] == ["CANCELED"]
    lines = await until_logged(http, run_id, "on_cancel")
    assert next(line for line in lines if line["message"] == "on_cancel")["attributes"] == {"cancelled": True}
    # Never retried, and the worker process is free again.
    assert (await get_run(http, run_id))["attemptCount"] == 1
    assert (await finished(http, await trigger(http, "echo", {"payload": 3})))["status"] == "COMPLETED"


async def test_on_cancel_can_wait_for_the_run_to_finish(http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "cancel-waits", {})
    await until_logged(http, run_id, "started")
    await cancel(http, run_id)
    lines = await until_logged(http, run_id, "on_cancel saw the output")
    seen = next(line for line in lines if line["message"] == "on_cancel saw the output")
    assert seen["attributes"]["output"] == {"stopped": "cleanly"}
    assert (await get_run(http, run_id))["status"] == "CANCELED"


async def test_canceling_a_parent_cancels_its_children(http: aiohttp.ClientSession, sdk: None) -> None:
    parent_id = await trigger(http, "parent-of-slow", {})
    lines = await until_logged(http, parent_id, "child")
    child_id = next(line for line in lines if line["message"] == "child")["attributes"]["id"]
    child = await get_run(http, child_id)
    assert child["parentRunId"] == parent_id and child["rootRunId"] == parent_id and child["depth"] == 1

    async def child_executing() -> bool:
        return (await get_run(http, child_id))["status"] == "EXECUTING"

    await eventually(child_executing, message="child executing")
    assert (await runs.cancel(parent_id)).id == parent_id
    assert (await get_run(http, parent_id))["status"] == "CANCELED"
    assert (await get_run(http, child_id))["status"] == "CANCELED"


async def test_a_lost_cancel_message_is_repaired_by_the_heartbeat(
    platform: Platform, http: aiohttp.ClientSession
) -> None:
    from slipstream_platform.store import runs as run_store

    run_id = await trigger(http, "cancellable", {})
    await until_logged(http, run_id, "started")
    conn = await asyncpg.connect(platform.local.database_url)
    try:
        # Cancel in Postgres only, as if the CancelRun message had been lost.
        env_id = await conn.fetchval("SELECT environment_id FROM runs WHERE id = $1", run_id)
        async with conn.transaction():
            assert await run_store.cancel(conn, env_id, run_id)
    finally:
        await conn.close()
    lines = await until_logged(http, run_id, "on_cancel")
    assert next(line for line in lines if line["message"] == "on_cancel")["attributes"] == {"cancelled": True}
    assert (await get_run(http, run_id))["status"] == "CANCELED"
