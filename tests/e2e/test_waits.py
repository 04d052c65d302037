"""Waiting without holding a slot: durations, child runs, replay, hooks, max_duration, cancel."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest

from tests.conftest import eventually
from tests.e2e.conftest import Platform
from tests.e2e.test_cancel import cancel
from tests.e2e.test_lifecycle import logs_of, messages
from tests.e2e.test_runs import finished, get_run, trigger

pytestmark = pytest.mark.e2e


async def test_a_run_waits_and_resumes_where_it_left_off(http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "waits", {"payload": {"seconds": 1}})

    async def waiting() -> bool:
        return (await get_run(http, run_id))["status"] == "WAITING"

    await eventually(waiting, message="run WAITING")
    assert (await get_run(http, run_id))["isWaiting"]
    run = await finished(http, run_id)
    assert run["status"] == "COMPLETED" and run["output"] == {"attempt": 1}
    assert run["attemptCount"] == 1 and [a["status"] for a in run["attempts"]] == ["COMPLETED"]
    # Replayed code does not log twice; start hooks ran once; wait hooks bracket each wait.
    lines = [m for m in messages(await logs_of(http, run_id)) if not m.startswith("global")]
    assert lines == [
        "on_start_attempt", "before", "on_wait", "on_resume", "between", "on_wait", "on_resume", "after",
    ], lines


async def test_waiting_runs_do_not_hold_slots(platform: Platform, http: aiohttp.ClientSession) -> None:
    # Six runs wait at once on a supervisor with four worker processes.
    ids = [await trigger(http, "waits", {"payload": {"seconds": 3}}) for _ in range(6)]
    conn = await asyncpg.connect(platform.local.database_url)
    try:
        async def all_waiting() -> bool:
            count = await conn.fetchval("SELECT count(*) FROM runs WHERE id = ANY($1) AND status = 'WAITING'", ids)
            return bool(count == 6)

        await eventually(all_waiting, message="six runs WAITING at once")
    finally:
        await conn.close()
    for run_id in ids:
        assert (await finished(http, run_id))["status"] == "COMPLETED"


async def test_trigger_and_wait_returns_child_results(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "waits-for-child", {"payload": {"second": "always-fails"}}))
    assert run["status"] == "COMPLETED"
    output = run["output"]
    assert output["first"] == {"n": 1}
    assert output["second_ok"] is False and output["second_status"] == "FAILED"
    assert output["second_error"] == "this task always fails"
    child = await get_run(http, output["first_id"])
    assert child["parentRunId"] == run["id"] and child["status"] == "COMPLETED"
    waits = [line for line in await logs_of(http, run["id"]) if line["message"] in ("on_wait", "on_resume")]
    assert [(line["message"], line["attributes"]["type"]) for line in waits] == [
        ("on_wait", "RUN"), ("on_resume", "RUN"), ("on_wait", "RUN"), ("on_resume", "RUN"),
    ]


async def test_time_spent_waiting_does_not_count_against_max_duration(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "waits-under-max-duration", {}))
    assert run["status"] == "COMPLETED" and run["output"] == "waiting does not count"


async def test_cancel_a_waiting_run_and_its_child(http: aiohttp.ClientSession) -> None:
    run_id = await trigger(http, "waits-long", {})

    async def waiting() -> bool:
        return (await get_run(http, run_id))["status"] == "WAITING"

    await eventually(waiting, message="parent WAITING")
    await cancel(http, run_id)
    assert (await get_run(http, run_id))["status"] == "CANCELED"
