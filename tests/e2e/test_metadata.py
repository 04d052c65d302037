"""Run metadata end to end: reported from inside runs, by children onto their parent, and
over HTTP; every operation kept under concurrency, and the 256 KB cap."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest
from slipstream import RunHandle, runs, tasks
from slipstream.errors import NotFoundError, UnprocessableEntityError

from tests.conftest import eventually
from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


async def done(run_id: str, timeout: float = 60) -> runs.Run:
    async def probe() -> runs.Run | None:
        run = await runs.retrieve(run_id)
        return run if run.is_completed else None

    return await eventually(probe, timeout=timeout, message=f"{run_id} finished")


async def test_a_run_reports_progress_and_keeps_it(sdk: None) -> None:
    handle = await tasks.trigger("progress", {}, metadata={"owner": "ada"})
    run = await done(handle.id)
    assert run.is_success, run.error
    expected = {"owner": "ada", "progress": 1.0, "steps": ["step-0", "step-2"], "count": 2.5,
                "nested": {"done": True}}
    # What the attempt saw, and what Postgres kept (the last set was sent when the attempt ended).
    assert run.output["initial"] == {"owner": "ada"} and run.output["too_large"] is True
    assert run.output["seen"] == expected and run.output["nested"] is True
    assert run.metadata == expected


async def test_children_update_their_parent_without_losing_an_operation(sdk: None) -> None:
    handle = await tasks.trigger("progress-parent", {"n": 12})
    run = await done(handle.id, timeout=120)
    assert run.is_success, run.error
    assert run.output == {"done": 12, "children": list(range(12)), "stage": "fan-out"}
    assert run.metadata is not None and run.metadata["done"] == 12


async def test_a_wait_does_not_send_an_operation_twice(sdk: None) -> None:
    run = await done((await tasks.trigger("progress-waits", {})).id)
    assert run.is_success, run.error
    assert run.metadata == {"before": 1, "parent_before": 1, "after": 1}
    assert run.output == {"before": 1, "parent_before": 1, "after": 1}


async def test_a_sync_task_reports_from_its_thread(sdk: None) -> None:
    run = await done((await tasks.trigger("progress-sync", {"n": 1500})).id)
    assert run.is_success, run.error
    assert run.output == 1500 and run.metadata == {"n": 1500, "done": True, "refused": "TaskRunError"}


async def test_metadata_over_http_and_the_sdk(sdk: None, http: aiohttp.ClientSession) -> None:
    handle = await tasks.trigger("echo", {})
    assert await runs.update_metadata(handle.id, metadata={"a": 1}) == {"a": 1}
    # Many writers at once: increments are applied on the row, none is lost.
    await asyncio.gather(*(runs.update_metadata(handle.id, operations=[{"type": "increment", "key": "n", "value": 1}])
                           for _ in range(40)))
    after = await runs.update_metadata(handle.id, operations=[
        {"type": "update", "value": {"b": [1]}}, {"type": "append", "key": "b", "value": 2},
        {"type": "set", "key": "$.c.d", "value": None}, {"type": "delete", "key": "a"}])
    assert after == {"n": 40, "b": [1, 2], "c": {"d": None}}
    assert (await runs.retrieve(handle.id)).metadata == after
    with pytest.raises(UnprocessableEntityError, match="256 KB"):
        await runs.update_metadata(handle.id, operations=[{"type": "set", "key": "x", "value": "y" * 270_000}])
    assert (await runs.retrieve(handle.id)).metadata == after  # nothing stored half
    with pytest.raises(NotFoundError):
        await runs.update_metadata("run_nope", metadata={})
    bad: list[dict[str, Any]] = [
        {"operations": [{"type": "set", "key": "a"}]},
        {"operations": [{"type": "set", "value": 1}]},
        {"operations": [{"type": "increment", "key": "a", "value": "1"}]},
        {"operations": [{"type": "increment", "key": "a", "value": True}]},
        {"operations": [{"type": "delete", "key": "a", "value": 1}]},
        {"operations": [{"type": "update", "key": "a", "value": {}}]},
        {"operations": [{"type": "update", "value": [1]}]},
        {"operations": [{"type": "explode", "key": "a"}]},
        {"operations": [{"type": "set", "key": "$.a..b", "value": 1}]},
        {"operations": [{"type": "set", "key": "a\u0000", "value": 1}]},
        {"metadata": [1]},
        {"parentOperations": [{"type": "set", "key": "", "value": 1}]},
        {"operations": [{"type": "set", "key": "$." + ".".join("a" * 33), "value": 1}]},
        {"operations": [{"type": "increment", "key": "n", "value": 1e400}]},
        {"operations": [{"type": "increment", "key": "n", "value": 1} for _ in range(1001)]},
    ]
    for body in bad:
        async with http.put(f"/api/v1/runs/{handle.id}/metadata", json=body) as response:
            # 400: the document refuses it; 422: a rule between fields the document cannot state.
            assert response.status in (400, 422), (body, await response.text())
            assert "error" in await response.json()
    assert (await runs.retrieve(handle.id)).metadata == after
    async with http.put(f"/api/v1/runs/{handle.id}/metadata", json={"metadata": {"a": "x\u0000"}}) as response:
        assert response.status == 422, await response.text()  # Postgres's JSON refuses NUL
    deep = '{"metadata": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"
    async with http.put(f"/api/v1/runs/{handle.id}/metadata", data=deep,
                        headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400, await response.text()


async def test_a_request_sent_again_is_applied_once(sdk: None, http: aiohttp.ClientSession) -> None:
    handle = await tasks.trigger("echo", {})
    body = {"operations": [{"type": "increment", "key": "n", "value": 1}]}
    for request_id in ("req-1", "req-1", "req-2", "req-1"):  # as the SDK sends one whose answer was lost
        async with http.put(f"/api/v1/runs/{handle.id}/metadata", json=body,
                            headers={"x-slipstream-request-id": request_id}) as response:
            assert response.status == 200
            answer = await response.json()
    assert answer == {"metadata": {"n": 2}}
    assert (await runs.retrieve(handle.id)).metadata == {"n": 2}


async def test_metadata_changes_reach_realtime_subscribers(sdk: None) -> None:
    handle = await tasks.trigger("echo", {}, delay="1h")  # stays DELAYED: only its metadata changes
    updates = runs.subscribe_to_run(handle.id)
    first = await asyncio.wait_for(updates.__anext__(), 10)
    assert first.status == "DELAYED" and first.metadata is None
    await runs.update_metadata(handle.id, operations=[{"type": "set", "key": "progress", "value": 0.5}])
    second = await asyncio.wait_for(updates.__anext__(), 10)
    assert second.status == "DELAYED" and second.metadata == {"progress": 0.5}
    await updates.aclose()
    await runs.cancel(handle.id)


async def test_a_subscription_can_outlive_the_run(sdk: None) -> None:
    handle = await tasks.trigger("echo", {})
    await done(handle.id)
    updates = runs.subscribe_to_run(handle.id, stop_on_completion=False)
    first = await asyncio.wait_for(updates.__anext__(), 10)
    assert first.is_completed
    await runs.add_tags(handle.id, "after")  # a finished run still changes
    await runs.update_metadata(handle.id, metadata={"late": True})

    async def latest() -> runs.Run:
        return await asyncio.wait_for(updates.__anext__(), 10)

    seen = await latest()
    while seen.metadata != {"late": True}:
        seen = await latest()
    assert seen.is_completed and seen.metadata == {"late": True}
    await updates.aclose()
    # Without it, the subscription of a finished run ends after its one message.
    assert [r.id async for r in runs.subscribe_to_run(handle.id)] == [handle.id]


async def test_subscribe_to_runs_with_a_tag_and_to_a_batch(sdk: None) -> None:
    tag = f"live-{uuid.uuid4().hex[:8]}"
    before = await tasks.trigger("echo", {"n": 0}, tags=[tag])
    await done(before.id)
    updates = runs.subscribe_to_runs_with_tag(tag)
    first = await asyncio.wait_for(updates.__anext__(), 10)
    assert first.id == before.id and first.is_completed  # what exists when it starts
    later = await tasks.trigger("echo", {"n": 1}, tags=[tag])
    seen: dict[str, str] = {}
    while seen.get(later.id) != "COMPLETED":
        run = await asyncio.wait_for(updates.__anext__(), 15)
        assert tag in run.tags
        seen[run.id] = run.status
    await updates.aclose()

    batch = await tasks.batch_trigger("echo", [{"payload": {"i": i}} for i in range(3)])
    members = {h.id for h in batch.runs}
    finished: set[str] = set()
    async for run in runs.subscribe_to_batch(batch.batch_id):
        assert run.id in members and run.batch_id == batch.batch_id
        if run.is_completed:
            finished.add(run.id)
        if finished == members:
            break
    with pytest.raises(NotFoundError):
        async for _ in runs.subscribe_to_batch("batch_nope"):
            pass


async def test_subscribe_to_every_run_of_the_environment(sdk: None) -> None:
    older = await tasks.trigger("echo", {"n": 0}, delay="1h")
    updates = runs.subscribe_to_all_runs()
    # Nothing is sent of what exists when it starts: only what is triggered or changes after.
    first_wait = asyncio.ensure_future(updates.__anext__())
    later = await eventually_triggered(first_wait)
    seen: dict[str, str] = {first_wait.result().id: first_wait.result().status}
    while seen.get(later.id) != "COMPLETED":
        run = await asyncio.wait_for(updates.__anext__(), 15)
        seen[run.id] = run.status
    assert older.id not in seen
    await runs.cancel(older.id)  # an older run that changes is sent too
    while seen.get(older.id) != "CANCELED":
        run = await asyncio.wait_for(updates.__anext__(), 15)
        seen[run.id] = run.status
    await updates.aclose()


async def eventually_triggered(first_wait: asyncio.Future[runs.Run]) -> RunHandle[Any]:
    """Trigger runs until the subscription (opening in the background) sends one: the last one."""
    while True:
        handle = await tasks.trigger("echo", {"n": 1})
        try:
            await asyncio.wait_for(asyncio.shield(first_wait), 1)
            return handle
        except TimeoutError:
            continue


async def test_a_subscription_comes_back_after_realtime_restarts(sdk: None, platform: Platform) -> None:
    handle = await tasks.trigger("echo", {}, delay="1h")
    updates = runs.subscribe_to_run(handle.id)
    first = await asyncio.wait_for(updates.__anext__(), 10)
    assert first.status == "DELAYED"
    platform.local.stop_service("realtime", kill=True)
    await runs.update_metadata(handle.id, metadata={"while": "down"})
    platform.local.start_service("realtime")
    platform.local.wait_healthy(["realtime"])
    # The change made while it was down arrives once; the state it had is not sent again.
    second = await asyncio.wait_for(updates.__anext__(), 30)
    assert second.metadata == {"while": "down"} and second.updated_at > first.updated_at
    await runs.update_metadata(handle.id, metadata={"after": "up"})
    third = await asyncio.wait_for(updates.__anext__(), 10)
    assert third.metadata == {"after": "up"}
    await updates.aclose()
    await runs.cancel(handle.id)
