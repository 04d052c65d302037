"""Hooks, middleware, locals, catch_error, aborts, logs and max_duration, in real workers."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from slipstream import runs

from tests.e2e.test_runs import finished, trigger

pytestmark = pytest.mark.e2e


async def logs_of(http: aiohttp.ClientSession, run_id: str) -> list[dict[str, Any]]:
    async with http.get(f"/api/v1/runs/{run_id}/logs") as response:
        assert response.status == 200, await response.text()
        return list((await response.json())["data"])


def messages(lines: list[dict[str, Any]], attempt: int | None = None) -> list[str]:
    return [line["message"] for line in lines if attempt is None or line["attemptNumber"] == attempt]


async def test_hook_order_across_a_retry(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "hooks-order", {"payload": {"fail": "first"}}))
    assert run["status"] == "COMPLETED"
    assert run["output"] == {"init": {"from": "init"}, "db": {"connected": True}}
    lines = await logs_of(http, run["id"])
    assert messages(lines, 1) == [
        "global middleware before", "middleware before", "on_start", "global on_start_attempt",
        "on_start_attempt", "init", "run", "cleanup",
    ]
    assert messages(lines, 2) == [
        "global middleware before", "middleware before", "global on_start_attempt", "on_start_attempt",
        "init", "run", "cleanup", "middleware after", "global middleware after",
        "global on_success", "on_success", "on_complete",
    ]
    on_complete = next(line for line in lines if line["message"] == "on_complete")
    assert on_complete["attributes"] == {"ok": True} and on_complete["level"] == "INFO"


async def test_on_failure_runs_once_after_the_last_attempt(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "hooks-order", {"payload": {"fail": "always"}}))
    assert run["status"] == "FAILED" and run["attemptCount"] == 2
    lines = await logs_of(http, run["id"])
    failures = [line for line in lines if line["message"] == "on_failure"]
    assert [line["attemptNumber"] for line in failures] == [2]
    assert failures[0]["attributes"]["error"] == "attempt 2 fails"
    assert messages(lines, 2)[-1] == "on_complete"
    assert "on_success" not in messages(lines)


async def test_errors_in_success_hooks_are_recorded_not_fatal(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "success-hook-fails", {}))
    assert run["status"] == "COMPLETED" and run["output"] == "still completed"
    errors = [line for line in await logs_of(http, run["id"]) if line["level"] == "ERROR"]
    assert len(errors) == 2
    assert all("hook exploded" in line["message"] for line in errors)
    assert {line["attributes"]["hook"] for line in errors} == {"on_success", "on_complete"}


async def test_an_error_in_on_start_attempt_fails_the_attempt(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "start-hook-fails", {}))
    assert run["status"] == "FAILED" and run["attemptCount"] == 2
    assert run["error"]["message"] == "hook exploded"


async def test_catch_error_can_skip_retrying_or_retry_sooner(http: aiohttp.ClientSession) -> None:
    skipped = await finished(http, await trigger(http, "catches", {"payload": {"raise": "value"}}))
    assert skipped["status"] == "FAILED" and skipped["attemptCount"] == 1
    # The task's back-off is a minute; catch_error asked for no delay, so this finishes fast.
    sooner = await finished(http, await trigger(http, "catches", {"payload": {"raise": "key"}}), timeout=20)
    assert sooner["status"] == "COMPLETED" and sooner["attemptCount"] == 3
    lines = await logs_of(http, sooner["id"])
    caught = [line for line in lines if line["message"] == "catch_error"]
    assert [line["attributes"]["error"] for line in caught] == ["KeyError", "KeyError"]
    assert caught[0]["attributes"]["default_delay"] >= 60_000


async def test_abort_fails_without_retrying(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "aborts", {}))
    assert run["status"] == "FAILED" and run["attemptCount"] == 1
    assert run["error"]["name"] == "AbortTaskRunError"


async def test_retry_on_throw_retries_a_block_inside_one_attempt(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "retries-a-block", {}))
    assert run["output"] == {"result": "ok", "calls": [1, 2, 3], "run_attempt": 1}
    warnings = [line for line in await logs_of(http, run["id"]) if line["level"] == "WARN"]
    assert len(warnings) == 2


async def test_max_duration_times_out_without_retry(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "too-slow", {}))
    assert run["status"] == "TIMED_OUT" and run["attemptCount"] == 1 and run["maxDuration"] == 1
    assert run["error"]["name"] == "MaxDurationExceededError"
    assert run["isFailed"] and run["isCompleted"]
    # on_failure fires for TIMED_OUT (it does not for CRASHED, SYSTEM_FAILURE, CANCELED).
    assert "on_failure" in messages(await logs_of(http, run["id"]))


async def test_max_duration_stops_sync_code_by_killing_its_process(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "too-slow-sync", {}))
    assert run["status"] == "TIMED_OUT" and run["attemptCount"] == 1
    # The slot's process was replaced: other runs still complete.
    ok = await finished(http, await trigger(http, "echo", {"payload": 1}))
    assert ok["status"] == "COMPLETED"


async def test_max_duration_from_the_trigger_overrides_the_task(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "sleepy", {"payload": {"seconds": 20},
                                                              "options": {"maxDuration": 1}}))
    assert run["status"] == "TIMED_OUT" and run["maxDuration"] == 1


async def test_sdk_reads_logs(sdk: None, http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "hooks-order", {"payload": {}}))
    lines = await runs.logs(run["id"])
    assert [line.message for line in lines][:2] == ["global middleware before", "middleware before"]
    assert lines[0].attempt_number == 1 and lines[0].level == "INFO"


async def test_a_run_over_its_machine_memory_ends_crashed(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "memory-hog", {"payload": {"mb": 400}}))
    assert run["status"] == "CRASHED" and run["attemptCount"] == 1 and run["machine"] == "micro"
    assert run["error"]["name"] == "TaskRunOutOfMemoryError"
    assert "of machine 'micro'" in run["error"]["message"]
    # Within its limit the same task completes.
    ok = await finished(http, await trigger(http, "memory-hog", {"payload": {"mb": 20}}))
    assert ok["status"] == "COMPLETED"


async def test_out_of_memory_retries_on_a_bigger_machine(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "memory-hog-upgrades", {"payload": {"mb": 400}}))
    assert run["status"] == "COMPLETED" and run["machine"] == "small-2x"
    assert [a["status"] for a in run["attempts"]] == ["CRASHED", "COMPLETED"]
    assert run["output"] == {"bytes": 400 * 1024 * 1024, "machine": "small-2x", "memory_gb": 1}


async def test_the_machine_trigger_option_overrides_the_task(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "memory-hog", {"payload": {"mb": 400},
                                                                  "options": {"machine": "medium-1x"}}))
    assert run["status"] == "COMPLETED" and run["machine"] == "medium-1x"
    async with http.post("/api/v1/tasks/echo/trigger", json={"options": {"machine": "huge"}}) as response:
        assert response.status == 422 and "not a preset" in (await response.json())["error"]


async def test_a_segfault_ends_the_run_crashed(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "segfault", {}))
    assert run["status"] == "CRASHED" and run["attemptCount"] == 1
    assert "killed by signal 11" in run["error"]["message"]


async def test_an_error_in_middleware_fails_the_attempt_and_is_retried(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "middleware-fails", {}))
    assert run["status"] == "FAILED" and run["attemptCount"] == 2
    assert run["error"]["message"] == "middleware refused"
    lines = await logs_of(http, run["id"])
    assert "run" not in messages(lines)
    assert [line["attemptNumber"] for line in lines if line["message"] == "on_failure"] == [2]


async def test_an_error_in_init_fails_the_attempt(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "init-fails", {}))
    assert run["status"] == "FAILED" and run["attemptCount"] == 2
    assert run["error"]["message"] == "init failed on attempt 2"


async def test_a_timeout_error_from_task_code_is_an_ordinary_error(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "raises-timeout", {}))
    assert run["status"] == "FAILED" and run["attemptCount"] == 2
    assert run["error"]["name"] == "TimeoutError"


async def test_a_failing_catch_error_ends_the_run_without_retry(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "catch-error-fails", {}))
    assert run["status"] == "FAILED" and run["attemptCount"] == 1
    assert run["error"]["name"] == "HandleErrorError" and run["error"]["message"] == "catch_error itself failed"


async def test_a_task_that_swallows_its_deadline_still_times_out(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "swallows-the-deadline", {}))
    assert run["status"] == "TIMED_OUT" and run["output"] is None
    caught = [line for line in await logs_of(http, run["id"]) if line["message"] == "caught"]
    assert caught and caught[0]["attributes"] == {"signal": True}
