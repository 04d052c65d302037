"""Replay-safe steps: a step's function runs once per run, whatever resumes and retries replay."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from slipstream import step
from slipstream.errors import TaskRunError

from tests.e2e.test_batches import post
from tests.e2e.test_runs import finished

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("fail", [False, True], ids=["resumed", "resumed-and-retried"])
async def test_a_step_runs_once_across_a_wait_and_a_retry(http: aiohttp.ClientSession, tmp_path: Path,
                                                          fail: bool) -> None:
    tmp_path.chmod(0o777)
    ledger = tmp_path / "ledger.txt"
    status, answer = await post(http, "/api/v1/tasks/steps/trigger",
                                {"payload": {"path": str(ledger), "amount": 42, "fail": fail}})
    assert status == 200, answer
    run = await finished(http, answer["id"], timeout=60)
    assert run["status"] == "COMPLETED", run
    # The charge happened once, though the function replayed after its wait (and its retry).
    assert ledger.read_text() == "charged 42\n"
    assert run["output"]["charged"] == {"amount": 42, "id": "ch_42"}
    # A step's result is its JSON form, recorded by the attempt that first ran it.
    assert run["output"]["sent"] == {"attempt": 1, "pair": [1, 2]}
    assert run["output"]["attempt"] == (2 if fail else 1)


async def test_a_step_outside_a_task_says_what_to_do(sdk: None) -> None:
    with pytest.raises(TaskRunError, match="outside one, call the function itself"):
        await step("x", lambda: 1)


async def test_a_step_of_a_run_not_executing_is_refused(http: aiohttp.ClientSession) -> None:
    status, answer = await post(http, "/api/v1/tasks/echo/trigger", {"payload": 1})
    run = await finished(http, answer["id"])
    status, answer = await post(http, f"/api/v1/runs/{run['id']}/steps",
                                {"seq": 0, "name": "late", "attemptNumber": 1, "result": 1})
    assert status == 409 and "not executing" in answer["error"]
    status, answer = await post(http, f"/api/v1/runs/{run['id']}/steps", {"seq": -1, "name": "", "attemptNumber": 1})
    assert status == 422
