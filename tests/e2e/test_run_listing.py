"""Listing runs over HTTP and with the SDK, as a user pages through them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from slipstream import runs, tasks
from slipstream.errors import BadRequestError

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
])
async def test_a_bad_listing_names_what_is_wrong(http: aiohttp.ClientSession, query: str, names: str) -> None:
    async with http.get(f"/api/v1/runs?{query}") as response:
        assert response.status == 400, await response.text()
        assert names in (await response.json())["error"]


async def test_a_bad_filter_from_the_sdk_is_a_typed_error(sdk: None) -> None:
    with pytest.raises(BadRequestError, match="filter\\[status\\]"):
        await runs.list(status="DONE")
