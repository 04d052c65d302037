"""Listing runs over HTTP and with the SDK, as a user pages through them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from slipstream import runs, tasks
from slipstream.errors import BadRequestError, NotFoundError, UnprocessableEntityError

from tests.conftest import eventually
from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


async def test_the_sdk_pages_through_runs_newest_first(sdk: None) -> None:
    tag = f"list-{uuid.uuid4().hex[:8]}"
    made = [(await tasks.trigger("echo", {"i": i}, tags=[tag])).id for i in range(7)]
    first = await runs.list(tag=tag, limit=3)
    assert [r.id for r in first.data] == made[::-1][:3] and first.has_next_page() and not first.has_previous_page()
    second = await first.get_next_page()
    assert [r.id for r in second.data] == made[::-1][3:6] and second.has_previous_page()
    assert [r.id for r in (await second.get_previous_page()).data] == made[::-1][:3]
    assert [r.id async for r in runs.list(tag=tag, limit=2)] == made[::-1]
    assert all(r.task_identifier == "echo" and tag in r.tags for r in first.data)
    # Filters combine; a period and times bound the creation.
    assert {r.id async for r in runs.list(tag=tag, task_identifier=["echo", "nope"])} == set(made)
    assert [r.id async for r in runs.list(tag=tag, task_identifier="nope")] == []
    assert len([r async for r in runs.list(tag=tag, period="1h")]) == 7
    assert [r async for r in runs.list(tag=tag, created_to=datetime.now(UTC) - timedelta(hours=1))] == []
    assert [r async for r in runs.list(tag=tag, is_test=True)] == []
    # An empty list is no filter; a bound taken from a run keeps that run; naive times are UTC.
    assert len([r async for r in runs.list(tag=tag, status=[], queue=())]) == 7
    oldest = await runs.retrieve(made[0])
    assert [r.id async for r in runs.list(tag=tag, created_to=oldest.created_at)] == [made[0]]
    naive = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1)
    assert len([r async for r in runs.list(tag=tag, created_to=naive, period="1h")]) == 7
    assert {r.id async for r in runs.list(tag=tag, task_identifier=["echo", "echo"])} == set(made)
    with pytest.raises(ValueError, match="last page"):
        await (await runs.list(tag=tag, limit=10)).get_next_page()


@pytest.mark.parametrize(("query", "names"), [
    ("filter[status]=QUEUED,DONE", "filter[status]"),
    ("page[size]=0", "page[size]"),
    ("page[size]=101", "page[size]"),
    ("page[size]=ten", "page[size]"),
    ("page[after]=run_x&page[before]=run_y", "page[after]"),
    ("page[after]=run_nope", "page[after]"),
    ("filter[createdAt][from]=yesterday", "filter[createdAt][from]"),
    ("filter[createdAt][period]=1year", "filter[createdAt][period]"),
    ("filter[isTest]=maybe", "filter[isTest]"),
    ("filter[stauts]=QUEUED", "filter[stauts]"),
    ("filter[tag]=a%00b", "filter[tag]"),
    ("filter[status]=", "filter[status]"),
    ("filter[status]=QUEUED&filter[status]=FAILED", "filter[status]"),
    ("filter[createdAt][period]=999999999d", "filter[createdAt][period]"),
    ("filter[createdAt][period]=99999999999999999999s", "filter[createdAt][period]"),
    ("filter[createdAt][from]=99999999999999999999", "filter[createdAt][from]"),
    ("page[after]=", "page[after]"),
    ("page[before]=%20", "page[before]"),
    ("filter[taskIdentifier]=" + ",".join(f"t{i}" for i in range(21)), "filter[taskIdentifier]"),
    ("filter[tag]=" + ",".join(f"t{i}" for i in range(101)), "filter[tag]"),
])
async def test_a_bad_listing_names_what_is_wrong(http: aiohttp.ClientSession, query: str, names: str) -> None:
    # 400: the OpenAPI document refuses the query; 422: a rule it cannot state (a cursor of no run,
    # both cursors at once, a period of centuries).
    rule = query in ("page[after]=run_x&page[before]=run_y", "page[after]=run_nope",
                     "filter[createdAt][period]=999999999d", "filter[createdAt][period]=99999999999999999999s")
    async with http.get(f"/api/v1/runs?{query}") as response:
        assert response.status == (422 if rule else 400), await response.text()
        assert names in (await response.json())["error"]


async def test_a_bad_filter_from_the_sdk_is_a_typed_error(sdk: None) -> None:
    with pytest.raises(BadRequestError, match="filter\\[status\\]"):
        await runs.list(status="DONE")


async def test_a_replay_is_a_new_run_of_the_same_task_linked_to_the_original(sdk: None) -> None:
    tag = f"replay-{uuid.uuid4().hex[:8]}"
    original = await tasks.trigger("echo", {"name": "Ada"}, tags=[tag], metadata={"k": "v"},
                                   concurrency_key="tenant-1", max_attempts=2)
    replayed = await runs.replay(original.id)
    assert replayed.id != original.id

    async def done(run_id: str) -> runs.Run:
        async def probe() -> runs.Run | None:
            run = await runs.retrieve(run_id)
            return run if run.is_completed else None
        return await eventually(probe, timeout=30, message=f"{run_id} finished")

    first, again = await done(original.id), await done(replayed.id)
    assert again.replayed_from_run_id == original.id and first.replayed_from_run_id is None
    # The echo task answers its payload and its context: the same payload, another run.
    assert again.task_identifier == "echo" and again.output["payload"] == first.output["payload"] == {"name": "Ada"}
    assert again.output["run"] == replayed.id
    assert (again.tags, again.metadata, again.concurrency_key) == ([tag], {"k": "v"}, "tenant-1")
    assert again.parent_run_id is None and again.depth == 0
    listed = [r async for r in runs.list(tag=tag)]
    assert [r.id for r in listed] == [replayed.id, original.id] and listed[0].replayed_from_run_id == original.id
    with pytest.raises(NotFoundError):
        await runs.replay("run_nope")


async def test_tags_are_added_deduplicated_and_capped(sdk: None, http: aiohttp.ClientSession) -> None:
    handle = await tasks.trigger("echo", {}, tags=["a"])
    assert await runs.add_tags(handle.id, ["b", "a", "b"]) == ["a", "b"]
    assert await runs.add_tags(handle.id, "c") == ["a", "b", "c"]
    assert (await runs.retrieve(handle.id)).tags == ["a", "b", "c"]
    with pytest.raises(UnprocessableEntityError, match="at most 10"):
        await runs.add_tags(handle.id, [f"t{i}" for i in range(8)])
    assert (await runs.retrieve(handle.id)).tags == ["a", "b", "c"]  # nothing half-added
    for body, status in [({"tags": []}, 400), ({"tags": ["x" * 129]}, 422), ({"tags": [""]}, 422),
                         ({"tags": "a\u0000b"}, 422), ({"tag": "x"}, 400), ({"tags": 5}, 400)]:
        async with http.post(f"/api/v1/runs/{handle.id}/tags", json=body) as response:
            assert response.status == status, (body, await response.text())
            assert "error" in await response.json()
    async with http.post("/api/v1/runs/run_nope/tags", json={"tags": ["x"]}) as response:
        assert response.status == 404


async def test_a_run_shows_its_tree_and_retrieve_takes_a_handle(sdk: None) -> None:
    handle = await tasks.trigger("parent", {})

    async def done(run_id: str) -> runs.Run | None:
        run = await runs.retrieve(run_id)
        return run if run.is_completed else None

    parent = await eventually(lambda: done(handle.id), timeout=30, message="the parent finished")
    assert (await runs.retrieve(handle)).id == handle.id  # a handle as well as an id
    assert parent.related_runs is not None and parent.related_runs.root is None
    [child] = parent.related_runs.children
    assert child.id == parent.output["child"] and child.parent_run_id == handle.id
    seen = await runs.retrieve(child.id)
    assert seen.related_runs is not None and seen.schedule is None
    assert seen.related_runs.parent is not None and seen.related_runs.parent.id == handle.id
    assert seen.related_runs.root is not None and seen.related_runs.root.id == handle.id
    assert seen.related_runs.children == []


async def test_browsers_may_call_the_api_and_read_the_zones_without_a_key(platform: Platform) -> None:
    origin = {"Origin": "https://app.example"}
    async with aiohttp.ClientSession(base_url=platform.api_url) as bare:
        async with bare.get("/api/v1/timezones", headers=origin) as response:
            assert response.status == 200 and "Europe/Paris" in (await response.json())["timezones"]
            assert response.headers["Access-Control-Allow-Origin"] == "*"
        preflight = {**origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization, content-type"}
        async with bare.options("/api/v1/tasks/echo/trigger", headers=preflight) as response:
            assert response.status == 204
            assert "POST" in response.headers["Access-Control-Allow-Methods"]
            assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
        async with bare.get("/api/v1/runs", headers=origin) as response:  # errors are marked too
            assert response.status == 401 and response.headers["Access-Control-Allow-Origin"] == "*"
        async with bare.get("/api/v1/timezones") as response:  # no Origin: no CORS headers
            assert "Access-Control-Allow-Origin" not in response.headers


async def test_a_started_run_records_the_version_of_its_worker(sdk: None) -> None:
    from slipstream_core.versions import code_version

    tag = f"version-{uuid.uuid4().hex[:8]}"
    handle = await tasks.trigger("echo", {"v": 1}, tags=[tag])
    await eventually(lambda: _completed(handle.id), message="the run completed")
    run = await runs.retrieve(handle.id)
    # No `worker --version`: the hash of the task package's source.
    assert run.version == code_version("tests.e2e.tasks")
    assert run.version is not None and run.version.startswith("code-")
    assert [r.id async for r in runs.list(tag=tag, version=run.version)] == [handle.id]
    assert [r.id async for r in runs.list(tag=tag, version="code-000000000000")] == []


async def _completed(run_id: str) -> bool:
    return (await runs.retrieve(run_id)).status == "COMPLETED"
