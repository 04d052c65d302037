"""slipstream.sync: the SDK without an event loop, from threads, inside a loop's thread, after fork."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from slipstream import sync
from slipstream._bridge import bridge
from slipstream.errors import NotFoundError
from slipstream.sync import runs, tasks

from tests.conftest import eventually
from tests.e2e.tasks.sample import echo

pytestmark = pytest.mark.e2e


def a_view(name: str) -> dict[str, Any]:
    """What a Django or Flask view does: trigger, then read."""
    handle = echo.trigger_sync({"name": name}, tags=["sync"])
    statuses = [run.status for run in runs.subscribe_to_run(handle.id)]
    run = runs.retrieve(handle)
    return {"id": handle.id, "statuses": statuses, "output": run.output, "token": handle.public_access_token}


async def test_a_view_without_an_event_loop(sdk: None) -> None:
    got = await asyncio.to_thread(a_view, "Ada")
    assert got["statuses"][-1] == "COMPLETED" and got["output"]["payload"] == {"name": "Ada"}
    assert got["token"]

    def more() -> dict[str, Any]:
        listed = runs.list(tag="sync", limit=1)
        first = listed.page()
        every = [run.id for run, _ in zip(listed, range(3), strict=False)]
        batch = tasks.batch_trigger("echo", [{"payload": {"i": i}} for i in range(3)])
        tags = runs.add_tags(got["id"], ["more"])
        with pytest.raises(NotFoundError):
            runs.retrieve("run_doesnotexist")
        return {"first": [r.id for r in first.data], "next": first.has_next_page(), "every": every,
                "batch": len(batch.runs), "tags": tags, "zones": len(sync.schedules.timezones()),
                "queues": [q.name for q in sync.queues.list()]}

    seen = await asyncio.to_thread(more)
    assert seen["first"] == [got["id"]] and seen["every"][0] == got["id"]
    assert seen["batch"] == 3 and seen["tags"] == ["sync", "more"] and seen["zones"] > 300
    assert "task/echo" in seen["queues"]


async def test_inside_a_running_event_loop_it_blocks_without_deadlock(sdk: None) -> None:
    handle = tasks.trigger("echo", {"in": "loop"})  # called from this test's own loop thread
    assert handle.id.startswith("run_")
    assert threading.current_thread() is not bridge.thread


async def test_many_threads_share_one_client(sdk: None) -> None:
    def burst(n: int) -> list[str]:
        return [tasks.trigger("echo", {"thread": n, "i": i}).id for i in range(20)]

    with ThreadPoolExecutor(8) as pool:
        ids = [i for chunk in await asyncio.gather(*(asyncio.wrap_future(pool.submit(burst, n)) for n in range(8)))
               for i in chunk]
    assert len(set(ids)) == 160
    loops = {bridge.loop}
    assert len(loops) == 1 and bridge.thread is not None and bridge.thread.daemon


def _child(queue: Any) -> None:
    queue.put(tasks.trigger("echo", {"forked": os.getpid()}).id)


async def test_a_forked_child_gets_its_own_loop(sdk: None) -> None:
    tasks.trigger("echo", {})  # the parent's bridge is running when the child forks
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    child.start()
    run_id = await asyncio.to_thread(queue.get, True, 60)
    await asyncio.to_thread(child.join, 60)
    assert child.exitcode == 0 and run_id.startswith("run_")


async def test_a_sync_task_triggers_its_child_with_the_sync_client(sdk: None) -> None:
    handle = await asyncio.to_thread(tasks.trigger, "sync-parent", {})

    async def done() -> Any:
        run = await asyncio.to_thread(runs.retrieve, handle.id)
        return run if run.is_completed else None

    parent = await eventually(done, timeout=30)
    assert parent.status == "COMPLETED", parent.error
    child = await asyncio.to_thread(runs.retrieve, parent.output["child"])
    assert child.parent_run_id == handle.id
