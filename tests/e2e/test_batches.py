"""Batches through the whole platform: HTTP and SDK, accepted or refused whole, in item order."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from slipstream import batch, tasks
from slipstream.errors import BatchItemError, NotFoundError, UnprocessableEntityError

from tests.conftest import eventually
from tests.e2e.conftest import Platform
from tests.e2e.tasks.sample import always_fails, echo
from tests.e2e.tasks.schemas import typed_function
from tests.e2e.test_runs import finished, get_run

pytestmark = pytest.mark.e2e


async def post(http: aiohttp.ClientSession, path: str, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    async with http.post(path, json=body, headers=headers) as response:
        return response.status, await response.json()


async def get_batch(http: aiohttp.ClientSession, batch_id: str) -> dict[str, Any]:
    async with http.get(f"/api/v2/batches/{batch_id}") as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def batch_done(http: aiohttp.ClientSession, batch_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        b = await get_batch(http, batch_id)
        return b if b["status"] != "PROCESSING" else None

    return await eventually(probe, timeout=30, message=f"batch {batch_id} did not finish")


async def test_a_batch_of_one_task_runs_every_item_in_order(http: aiohttp.ClientSession) -> None:
    items = [{"payload": {"n": 0}}, {"payload": {"n": 1}, "options": {"tags": ["second"], "maxAttempts": 2}},
             {"payload": {"n": 2}, "options": {"concurrencyKey": "tenant-1"}}]
    status, answer = await post(http, "/api/v1/tasks/echo/batch", {"items": items})
    assert status == 202, answer
    assert answer["id"].startswith("batch_") and answer["isCached"] is False
    assert [r["taskIdentifier"] for r in answer["runs"]] == ["echo"] * 3
    assert not any(r["isCached"] for r in answer["runs"])
    runs = [await finished(http, r["id"]) for r in answer["runs"]]
    assert [r["payload"] for r in runs] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [r["status"] for r in runs] == ["COMPLETED"] * 3
    assert all(r["batchId"] == answer["id"] for r in runs)
    assert runs[1]["tags"] == ["second"] and runs[2]["concurrencyKey"] == "tenant-1"
    b = await batch_done(http, answer["id"])
    assert b["status"] == "COMPLETED" and b["runCount"] == 3
    assert b["runs"] == [r["id"] for r in answer["runs"]]


async def test_a_batch_of_several_tasks_reports_a_partial_failure(http: aiohttp.ClientSession) -> None:
    items = [{"task": "echo", "payload": 1}, {"task": "always-fails", "payload": None,
                                               "options": {"maxAttempts": 1}}, {"task": "echo-sync", "payload": 3}]
    status, answer = await post(http, "/api/v1/tasks/batch", {"items": items})
    assert status == 202, answer
    assert [r["taskIdentifier"] for r in answer["runs"]] == ["echo", "always-fails", "echo-sync"]
    b = await batch_done(http, answer["id"])
    assert b["status"] == "PARTIAL_FAILED"
    assert [(await get_run(http, run_id))["status"] for run_id in b["runs"]] == ["COMPLETED", "FAILED", "COMPLETED"]


async def run_count(platform: Platform) -> int:
    conn = await asyncpg.connect(platform.local.database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM runs"))
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"items": []}, 400, "at least one item"),
        ({"items": [{"payload": i} for i in range(1001)]}, 400, "at most 1,000 items"),
        ({"items": [{"payload": 1}, {"payload": 2, "options": {"ttl": True}}]}, 400, "items[1].options.ttl"),
        ({"items": [{"payload": 1}, {"payload": 2}, {"payload": 3, "options": {"maxAttempts": 0}}]}, 422,
         "items[2]: maxAttempts must be at least 1"),
        ({"items": [{"payload": 1}, {"payload": "a\u0000b"}]}, 422, "items[1]: payload contains a NUL"),
        ({"items": [{"payload": 1, "options": {"tags": ["ok", "x\u0000"]}}]}, 422, "items[0]: options.tags[1]"),
        ({"items": [{"payload": 1}], "options": {"idempotencyKey": ""}}, 422, "options.idempotencyKey"),
        ({"items": [{"payload": 1, "surprise": True}]}, 400, "surprise"),
        ({}, 400, "missing required field `items`"),
        ({"items": [{"options": {"queue": {"name": "q1", "concurrencyLimit": 1}}},
                    {"options": {"queue": {"name": "q1", "concurrencyLimit": 2}}}]}, 422,
         "items[1]: queue 'q1' is given two concurrencyLimits"),
    ],
    ids=["empty", "too-many", "bad-type", "bad-rule", "nul-payload", "nul-tag", "bad-batch-key", "unknown-field",
         "no-items", "two-limits"],
)
async def test_a_bad_batch_is_refused_whole_naming_the_item(
    platform: Platform, http: aiohttp.ClientSession, body: dict[str, Any], status: int, message: str
) -> None:
    before = await run_count(platform)
    got, answer = await post(http, "/api/v1/tasks/echo/batch", body)
    assert got == status and message in answer["error"], answer
    assert await run_count(platform) == before


async def test_a_bad_task_id_in_a_batch_of_tasks_names_the_item(http: aiohttp.ClientSession) -> None:
    got, answer = await post(http, "/api/v1/tasks/batch", {"items": [{"task": "echo"}, {"task": "no good"}]})
    assert got == 400 and "items[1]: task id 'no good' is not valid" in answer["error"], answer


async def test_idempotency_keys_inside_and_around_a_batch(http: aiohttp.ClientSession) -> None:
    key = f"k-{uuid.uuid4().hex}"
    items = [{"payload": 1, "options": {"idempotencyKey": key}}, {"payload": 2},
             {"payload": 3, "options": {"idempotencyKey": key}}]
    status, answer = await post(http, "/api/v1/tasks/echo/batch", {"items": items})
    assert status == 202, answer
    first, plain, same = answer["runs"]
    # Two items with one key stand for one run; the first made it.
    assert same["id"] == first["id"] and same["isCached"] and not first["isCached"] and plain["id"] != first["id"]
    # A key of a run made before returns it in a later batch too.
    again = {"items": [{"payload": 9, "options": {"idempotencyKey": key}}]}
    _, later = await post(http, "/api/v1/tasks/echo/batch", again)
    assert later["runs"][0] == {"id": first["id"], "taskIdentifier": "echo", "isCached": True}
    # A batch key: the same batch again is the first batch.
    batch_key = f"b-{uuid.uuid4().hex}"
    body = {"items": [{"payload": "x"}], "options": {"idempotencyKey": batch_key}}
    _, one = await post(http, "/api/v1/tasks/echo/batch", body)
    _, two = await post(http, "/api/v1/tasks/echo/batch", body)
    assert two["id"] == one["id"] and two["isCached"] and not one["isCached"]
    assert [r["id"] for r in two["runs"]] == [r["id"] for r in one["runs"]] and all(r["isCached"] for r in two["runs"])
    assert (await get_batch(http, one["id"]))["idempotencyKey"] == batch_key


async def test_a_repeated_request_id_returns_the_batch_it_made(http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    body = {"items": [{"payload": 1}, {"payload": 2}]}
    _, one = await post(http, "/api/v1/tasks/echo/batch", body, **{"x-slipstream-request-id": request_id})
    _, two = await post(http, "/api/v1/tasks/echo/batch", body, **{"x-slipstream-request-id": request_id})
    assert two["id"] == one["id"] and [r["id"] for r in two["runs"]] == [r["id"] for r in one["runs"]]


async def test_an_unknown_batch_is_a_404(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v2/batches/batch_nope") as response:
        assert response.status == 404 and "Batch not found" in (await response.json())["error"]


async def test_the_sdk_batch_functions(http: aiohttp.ClientSession, sdk: None) -> None:
    handle = await echo.batch_trigger([{"payload": {"i": 0}}, {"payload": {"i": 1}, "options": {"tags": "t"}}])
    assert len(handle.runs) == 2 and all(r.task_identifier == "echo" for r in handle.runs)
    by_id = await tasks.batch_trigger("echo-sync", ({"payload": i} for i in range(3)))
    mixed = await batch.trigger([{"id": "echo", "payload": "a"}, {"id": "echo-sync", "payload": "b"}])
    by_task = await batch.trigger_by_task([{"task": echo, "payload": "c"},
                                           {"task": always_fails, "options": {"max_attempts": 1}}])
    assert [r.task_identifier for r in mixed.runs] == ["echo", "echo-sync"]
    assert [r.task_identifier for r in by_task.runs] == ["echo", "always-fails"]
    for h, status in ((handle, "COMPLETED"), (by_id, "COMPLETED"), (mixed, "COMPLETED"),
                      (by_task, "PARTIAL_FAILED")):
        b = await batch_done(http, h.batch_id)
        assert b["status"] == status and b["runs"] == [r.id for r in h.runs]
    retrieved = await batch.retrieve(handle.batch_id)
    assert retrieved.status == "COMPLETED" and retrieved.runs == [r.id for r in handle.runs]
    again = await echo.batch_trigger([{"payload": 1}], idempotency_key=f"sdk-{handle.batch_id}")
    cached = await echo.batch_trigger([{"payload": 1}], idempotency_key=f"sdk-{handle.batch_id}")
    assert cached.is_cached and cached.batch_id == again.batch_id
    with pytest.raises(NotFoundError):
        await batch.retrieve("batch_nope")


async def test_the_sdk_refuses_bad_items_before_sending(sdk: None) -> None:
    with pytest.raises(BatchItemError, match="at least one item"):
        await echo.batch_trigger([])
    with pytest.raises(BatchItemError, match=r"items\[1\] must be a dict"):
        await echo.batch_trigger([{"payload": 1}, 2])  # type: ignore[list-item]
    with pytest.raises(BatchItemError, match=r"items\[0\] has unknown key\(s\) paylod"):
        await echo.batch_trigger([{"paylod": 1}])  # type: ignore[typeddict-unknown-key]
    with pytest.raises(BatchItemError, match=r"items\[0\].options: unknown trigger option"):
        await echo.batch_trigger([{"payload": 1, "options": {"retries": 2}}])  # type: ignore[typeddict-unknown-key]
    with pytest.raises(BatchItemError, match=r"items\[0\].task must be a task"):
        await batch.trigger_by_task([{"task": "echo"}])
    with pytest.raises(BatchItemError, match=r"items\[0\].id must be a task id"):
        await batch.trigger([{"payload": 1}])
    with pytest.raises(BatchItemError, match=r"items\[2\] must be a dict"):
        await echo.batch_trigger(_gen([{"payload": 1}, {"payload": 2}, 3]))
    with pytest.raises(BatchItemError, match="not dict"):
        await echo.batch_trigger({"payload": 1})  # type: ignore[arg-type]
    # A schema task checks every payload first.
    with pytest.raises(ValueError, match="3 is not an even number"):
        await typed_function.batch_trigger([{"payload": 2}, {"payload": 3}])
    # The server names the item it refuses.
    with pytest.raises(UnprocessableEntityError, match=r"items\[1\]: maxAttempts"):
        await echo.batch_trigger([{"payload": 1}, {"payload": 2, "options": {"max_attempts": 0}}])


async def test_a_batch_triggered_inside_a_task_makes_its_children(http: aiohttp.ClientSession) -> None:
    status, answer = await post(http, "/api/v1/tasks/fan-out/trigger", {"payload": {"n": 3}})
    assert status == 200, answer
    parent = await finished(http, answer["id"])
    assert parent["status"] == "COMPLETED", parent
    children = [await finished(http, run_id) for run_id in parent["output"]["children"]]
    assert [c["payload"] for c in children] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert all(c["parentRunId"] == parent["id"] and c["depth"] == 1 for c in children)
    assert all(c["batchId"] == parent["output"]["batch"] for c in children)


async def test_a_parent_waits_for_its_batches_and_gets_every_result_in_order(http: aiohttp.ClientSession) -> None:
    status, answer = await post(http, "/api/v1/tasks/waits-for-batch/trigger", {"payload": {"n": 4}})
    assert status == 200, answer
    parent = await finished(http, answer["id"], timeout=60)
    assert parent["status"] == "COMPLETED", parent
    out = parent["output"]
    assert out["first"] == [{"ok": True, "task": "echo", "payload": {"i": i}} for i in range(4)]
    assert out["mixed"] == [{"ok": True, "task": "echo", "status": "COMPLETED", "error": None},
                            {"ok": False, "task": "always-fails", "status": "FAILED", "error": "ValueError"}]
    assert out["by_id"] == [{"sync": True, "payload": 7}]
    # One attempt, resumed after each batch (the children ran while it waited without a slot).
    assert out["attempt"] == 1 and parent["attemptCount"] == 1


async def test_waiting_for_a_batch_outside_a_task_says_what_to_use(sdk: None) -> None:
    from slipstream.errors import TaskRunError

    with pytest.raises(TaskRunError, match=r"outside one, use batch_trigger\(\)"):
        await echo.batch_trigger_and_wait([{"payload": 1}])
    with pytest.raises(TaskRunError, match="only be used inside a running task"):
        await batch.trigger_and_wait([{"id": "echo", "payload": 1}])
    # Outside a task nothing is sent, however many items there are.
    with pytest.raises(TaskRunError, match="only be used inside a running task"):
        await echo.batch_trigger_and_wait({"payload": i} for i in range(2500))


async def test_a_fan_out_of_1000_children_through_a_limited_queue(platform: Platform,
                                                                  http: aiohttp.ClientSession) -> None:
    status, answer = await post(http, "/api/v1/tasks/fan-parent/trigger", {"payload": {"n": 1000}})
    assert status == 200, answer
    parent = await finished(http, answer["id"], timeout=180)
    assert parent["status"] == "COMPLETED", parent
    assert parent["output"]["ordered"] and parent["output"]["count"] == 1000
    conn = await asyncpg.connect(platform.local.database_url)
    try:
        rows = await conn.fetch(
            "SELECT a.started_at, a.completed_at FROM attempts a JOIN runs r ON r.id = a.run_id"
            " WHERE r.batch_id = $1", parent["output"]["batch"])
        assert len(rows) == 1000  # one attempt each: nothing ran twice
        events = sorted([(r["started_at"], 1) for r in rows] + [(r["completed_at"], -1) for r in rows])
        running = peak = 0
        for _, delta in events:
            running += delta
            peak = max(peak, running)
        assert peak <= 2, f"{peak} children of a limit-2 queue executed at once"
    finally:
        await conn.close()


async def test_a_parent_waits_for_children_in_its_own_limit_1_queue(http: aiohttp.ClientSession) -> None:
    status, answer = await post(http, "/api/v1/tasks/fan-own-parent/trigger", {"payload": None})
    assert status == 200, answer
    parent = await finished(http, answer["id"], timeout=60)
    assert parent["status"] == "COMPLETED" and parent["output"] == [0, 1, 2, 3, 4], parent


async def test_a_chain_five_deep_ending_in_a_batch(http: aiohttp.ClientSession) -> None:
    status, answer = await post(http, "/api/v1/tasks/chain/trigger", {"payload": {"depth": 5}})
    assert status == 200, answer
    run = await finished(http, answer["id"], timeout=90)
    assert run["status"] == "COMPLETED", (run["error"], run["attempts"])
    level, depth, parent = run["output"], 5, None
    while True:
        child = await get_run(http, level["run"])
        assert (level["depth"], child["depth"], child["parentRunId"]) == (depth, 5 - depth, parent)
        if depth == 0:
            break
        level, depth, parent = level["below"], depth - 1, level["run"]
    assert level["leaves"] == [0, 1, 2]


async def _gen(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def test_more_than_1000_items_stream_into_one_batch(http: aiohttp.ClientSession, sdk: None) -> None:
    async def items() -> AsyncIterator[dict[str, Any]]:
        for i in range(2100):
            yield {"payload": i, "options": {"delay": "1h"}}  # DELAYED: they stay out of the way

    handle = await echo.batch_trigger(items())
    assert len(handle.runs) == 2100 and len({r.id for r in handle.runs}) == 2100
    b = await get_batch(http, handle.batch_id)
    assert b["runCount"] == 2100 and b["runs"] == [r.id for r in handle.runs] and b["status"] == "PROCESSING"
    for index in (0, 999, 1000, 2099):
        assert (await get_run(http, handle.runs[index].id))["payload"] == index
    # A plain iterable of more than 1,000 works the same, for several tasks too.
    mixed = await batch.trigger({"id": "echo" if i % 2 else "echo-sync", "payload": i, "options": {"delay": "1h"}}
                                for i in range(1001))
    assert [r.task_identifier for r in mixed.runs[:2]] == ["echo-sync", "echo"] and len(mixed.runs) == 1001


async def test_a_parent_waits_for_a_streamed_batch_and_its_retry_adds_no_child_twice(
        platform: Platform, http: aiohttp.ClientSession) -> None:
    # 2,500 children from an async generator: three chunks over HTTP into one batch, then the
    # wait. The first attempt fails at item 1,500, after its first chunk went; the retry sends
    # all three (the first again, by the same request id: it adds nothing).
    status, answer = await post(http, "/api/v1/tasks/streams-a-batch/trigger",
                                {"payload": {"n": 2500, "fail_at": 1500}})
    assert status == 200, answer
    parent = await finished(http, answer["id"], timeout=180)
    assert parent["status"] == "COMPLETED", parent
    out = parent["output"]
    assert out == {"batch": out["batch"], "count": 2500, "attempt": 2, "ordered": True}
    b = await get_batch(http, out["batch"])
    assert b["status"] == "COMPLETED" and b["runCount"] == 2500
    conn = await asyncpg.connect(platform.local.database_url)
    try:
        batches = await conn.fetch("SELECT id, sealed FROM batches WHERE parent_run_id = $1", parent["id"])
        assert [(r["id"], r["sealed"]) for r in batches] == [(out["batch"], True)]
        children = await conn.fetch("SELECT payload, batch_id, depth FROM runs WHERE parent_run_id = $1",
                                    parent["id"])
        assert len(children) == 2500, "a chunk was added twice (or lost)"
        assert sorted(json.loads(r["payload"])["i"] for r in children) == list(range(2500))
        assert {(r["batch_id"], r["depth"]) for r in children} == {(out["batch"], 1)}
        waits = await conn.fetch("SELECT type, batch_id, status FROM waitpoints WHERE run_id = $1", parent["id"])
        assert [tuple(w) for w in waits] == [("BATCH", out["batch"], "COMPLETED")]
    finally:
        await conn.close()


async def test_a_wait_for_a_batch_the_run_did_not_make_fails_it(http: aiohttp.ClientSession, sdk: None) -> None:
    other = await echo.batch_trigger([{"payload": 1}])
    for batch_id, reason in ((other.batch_id, "was not triggered by run"), ("batch_nope", "not found")):
        status, answer = await post(http, "/api/v1/tasks/waits-for-a-foreign-batch/trigger", {"payload": batch_id})
        assert status == 200, answer
        run = await finished(http, answer["id"])
        assert run["status"] == "FAILED" and reason in run["error"]["message"], run


async def test_a_step_while_a_waited_batch_streams_fails_the_run_clearly(http: aiohttp.ClientSession) -> None:
    status, answer = await post(http, "/api/v1/tasks/streams-a-batch/trigger",
                                {"payload": {"n": 1500, "step_at": 1200}})
    assert status == 200, answer
    run = await finished(http, answer["id"], timeout=60)
    assert run["status"] == "FAILED" and "must not run step() or a wait" in run["error"]["message"], run
    assert run["attemptCount"] == 2  # the retry streams its first chunk again (by its request id), and fails the same


async def test_a_finished_parent_gets_no_more_children_and_a_repeated_chunk_must_be_the_same(
        http: aiohttp.ClientSession) -> None:
    status, answer = await post(http, "/api/v1/tasks/sleepy/trigger", {"payload": {"seconds": 30}})
    assert status == 200, answer
    parent = answer["id"]
    item = {"payload": 1, "options": {"parentRunId": parent, "delay": "1h"}}
    status, opened = await post(http, "/api/v1/tasks/echo/batch", {"items": [item], "options": {"open": True}})
    assert status == 202, opened
    chunk = {"items": [{"task": "echo", **item}], "seal": False}
    status, answer = await post(http, f"/api/v2/batches/{opened['id']}/items", chunk,
                                **{"x-slipstream-request-id": "chunk-1"})
    assert status == 202, answer
    status, answer = await post(http, f"/api/v2/batches/{opened['id']}/items", {**chunk, "seal": True},
                                **{"x-slipstream-request-id": "chunk-1"})
    assert status == 409 and "a repeated request must be the same" in answer["error"], answer
    async with http.post(f"/api/v2/runs/{parent}/cancel") as response:
        assert response.status == 200, await response.text()
    status, answer = await post(http, f"/api/v2/batches/{opened['id']}/items", chunk,
                                **{"x-slipstream-request-id": "chunk-2"})
    assert status == 409 and "is CANCELED" in answer["error"], answer
    status, answer = await post(http, "/api/v1/tasks/echo/batch", {"items": [item]})
    assert status == 409 and "a finished run triggers no more children" in answer["error"], answer
    # The cancel reached the children made before it.
    for run_id in opened["runs"]:
        assert (await get_run(http, run_id["id"]))["status"] == "CANCELED"


async def test_an_open_batch_takes_chunks_until_sealed(http: aiohttp.ClientSession) -> None:
    body = {"items": [{"payload": 0, "options": {"delay": "1h"}}], "options": {"open": True}}
    opening = {"x-slipstream-request-id": uuid.uuid4().hex}
    status, first = await post(http, "/api/v1/tasks/echo/batch", body, **opening)
    assert status == 202, first
    batch_id = first["id"]
    # The opening request sent again (its answer was lost) is the same answer, not a cached
    # batch: the client goes on sending chunks.
    _, repeated = await post(http, "/api/v1/tasks/echo/batch", body, **opening)
    assert repeated == first
    assert (await get_batch(http, batch_id))["status"] == "PENDING"
    chunk = {"items": [{"task": "echo", "payload": 1, "options": {"delay": "1h"}}]}
    status, second = await post(http, f"/api/v2/batches/{batch_id}/items", chunk,
                                **{"x-slipstream-request-id": "chunk-1"})
    assert status == 202 and second["id"] == batch_id and len(second["runs"]) == 1, second
    # A retried chunk returns its runs; it adds nothing.
    _, again = await post(http, f"/api/v2/batches/{batch_id}/items", chunk, **{"x-slipstream-request-id": "chunk-1"})
    assert [r["id"] for r in again["runs"]] == [r["id"] for r in second["runs"]] and again["isCached"]
    status, wrong = await post(http, f"/api/v2/batches/{batch_id}/items", {"items": [{"task": "echo-sync"}]})
    assert status == 422 and "items[2]" in wrong["error"] and "'echo' only" in wrong["error"], wrong
    status, bad = await post(http, f"/api/v2/batches/{batch_id}/items",
                             {"items": [{"task": "echo", "options": {"maxAttempts": 0}}]})
    assert status == 422 and "items[2]: maxAttempts" in bad["error"], bad
    status, last = await post(http, f"/api/v2/batches/{batch_id}/items",
                              {"items": [{"task": "echo", "payload": 2, "options": {"delay": "1h"}}], "seal": True})
    assert status == 202, last
    b = await get_batch(http, batch_id)
    assert b["status"] == "PROCESSING" and b["runCount"] == 3
    assert b["runs"] == [first["runs"][0]["id"], second["runs"][0]["id"], last["runs"][0]["id"]]
    status, sealed = await post(http, f"/api/v2/batches/{batch_id}/items", chunk)
    assert status == 409 and "sealed" in sealed["error"]
    status, missing = await post(http, "/api/v2/batches/batch_nope/items", chunk)
    assert status == 404


async def test_canceling_a_parent_waiting_on_a_batch_cancels_its_children(platform: Platform,
                                                                         http: aiohttp.ClientSession) -> None:
    _, answer = await post(http, "/api/v1/tasks/waits-for-delayed-batch/trigger", {"payload": {}})
    parent_id = answer["id"]

    async def waiting() -> dict[str, Any] | None:
        run = await get_run(http, parent_id)
        return run if run["status"] == "WAITING" else None

    await eventually(waiting, timeout=30, message="the parent waiting on its batch")
    async with http.post(f"/api/v2/runs/{parent_id}/cancel") as response:
        assert response.status == 200
    assert (await finished(http, parent_id))["status"] == "CANCELED"
    conn = await asyncpg.connect(platform.local.database_url)
    try:
        children = [r["id"] for r in await conn.fetch("SELECT id FROM runs WHERE parent_run_id = $1", parent_id)]
    finally:
        await conn.close()
    runs = [await get_run(http, child) for child in children]
    assert len(runs) == 3 and all(r["status"] == "CANCELED" for r in runs)
    assert (await get_batch(http, runs[0]["batchId"]))["status"] == "ABORTED"


async def test_idempotency_keys_inside_a_batch_a_parent_waits_for(http: aiohttp.ClientSession) -> None:
    key, old_key = f"w-{uuid.uuid4().hex}", f"old-{uuid.uuid4().hex}"
    body = {"payload": "before", "options": {"idempotencyKey": old_key}}
    _, old = await post(http, "/api/v1/tasks/echo/trigger", body)
    await finished(http, old["id"])
    _, answer = await post(http, "/api/v1/tasks/waits-with-keys/trigger",
                           {"payload": {"key": key, "old_key": old_key}})
    parent = await finished(http, answer["id"], timeout=60)
    assert parent["status"] == "COMPLETED", parent
    a, b, c = parent["output"]
    # Two items with one key: one run; a key of a finished run: that run, which completes the wait.
    assert a["id"] == b["id"] and a["payload"] == b["payload"] == "a" and a["ok"]
    assert c == {"id": old["id"], "ok": True, "payload": "before"}
