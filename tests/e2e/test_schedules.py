"""Scheduled tasks over HTTP and the SDK: declarative and imperative schedules, and firing."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from slipstream import schedules

from tests.conftest import eventually
from tests.e2e.conftest import Platform
from tests.e2e.test_runs import finished

pytestmark = pytest.mark.e2e


async def create(http: aiohttp.ClientSession, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    async with http.post("/api/v1/schedules", json=body) as response:
        assert response.status == status, await response.text()
        return dict(await response.json())


async def test_declarative_schedules_come_from_the_worker(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/schedules?perPage=100") as response:
        page = await response.json()
    declared = [s for s in page["data"] if s["task"] == "every-two-hours"]
    assert len(declared) == 1
    schedule = declared[0]
    assert schedule["type"] == "DECLARATIVE" and schedule["active"] and schedule["timezone"] == "Europe/London"
    assert schedule["generator"]["type"] == "CRON" and schedule["generator"]["expression"] == "0 */2 * * *"
    next_run = datetime.fromisoformat(schedule["nextRun"]).astimezone(ZoneInfo("Europe/London"))
    assert next_run.minute == 0 and next_run.hour % 2 == 0
    assert schedule["environments"][0]["type"] == "DEVELOPMENT"


async def test_imperative_schedule_lifecycle(http: aiohttp.ClientSession, sdk: None) -> None:
    key = f"tenant-{uuid.uuid4()}"
    body = {"task": "per-tenant-report", "cron": "0 9 * * 1", "deduplicationKey": key,
            "externalId": "tenant-7", "timezone": "Asia/Tokyo"}
    first = await create(http, body)
    assert first["id"].startswith("sched_") and first["type"] == "IMPERATIVE" and first["externalId"] == "tenant-7"
    # Upsert by deduplicationKey.
    again = await create(http, {**body, "cron": "0 10 * * 1"})
    assert again["id"] == first["id"] and again["generator"]["expression"] == "0 10 * * 1"
    retrieved = await schedules.retrieve(first["id"])
    assert retrieved.timezone == "Asia/Tokyo" and retrieved.next_run is not None
    assert retrieved.next_run.astimezone(ZoneInfo("Asia/Tokyo")).hour == 10
    updated = await schedules.update(first["id"], task="per-tenant-report", cron="30 8 * * *", external_id="t-8")
    assert updated.external_id == "t-8" and updated.timezone == "UTC"
    off = await schedules.deactivate(first["id"])
    assert not off.active and off.next_run is None
    on = await schedules.activate(first["id"])
    assert on.active and on.next_run is not None
    page = await schedules.list(page=1, per_page=1)
    assert page.pagination.current_page == 1 and page.pagination.count >= 2
    assert page.pagination.total_pages == page.pagination.count
    await schedules.delete(first["id"])
    async with http.get(f"/api/v1/schedules/{first['id']}") as response:
        assert response.status == 404
    zones = await schedules.timezones()
    assert "America/New_York" in zones and "UTC" in zones


@pytest.mark.parametrize(("body", "fragment"), [
    ({"task": "per-tenant-report", "cron": "0 0 * * * 5", "deduplicationKey": "k"}, "seconds are not supported"),
    ({"task": "per-tenant-report", "cron": "0 0 * *", "deduplicationKey": "k"}, "fields"),
    ({"task": "per-tenant-report", "cron": "0 0 * * *", "deduplicationKey": "k", "timezone": "Nowhere/City"},
     "IANA"),
    ({"task": "nobody-knows", "cron": "0 0 * * *", "deduplicationKey": "k"}, "unknown"),
    ({"task": "echo", "cron": "0 0 * * *", "deduplicationKey": "k"}, "not a scheduled task"),
    ({"task": "per-tenant-report", "cron": "0 0 * * *", "deduplicationKey": ""}, "deduplicationKey"),
    ({"task": "per-tenant-report", "cron": "0 0 * * *", "deduplicationKey": "declarative:every-two-hours"},
     "belong to declarative schedules"),
])
async def test_bad_schedules_are_422(http: aiohttp.ClientSession, body: dict[str, Any], fragment: str) -> None:
    answer = await create(http, body, status=422)
    assert fragment in answer["error"]


async def test_a_due_schedule_fires_once(platform: Platform, http: aiohttp.ClientSession) -> None:
    schedule = await create(http, {"task": "per-tenant-report", "cron": "* * * * *",
                                   "deduplicationKey": f"fire-{uuid.uuid4()}", "externalId": "tenant-9"})
    conn = await asyncpg.connect(platform.local.database_url)
    try:
        # Bring its next tick to now instead of waiting for the minute to turn.
        await conn.execute("UPDATE schedules SET next_run_at = date_trunc('minute', now()) WHERE id = $1",
                           schedule["id"])

        async def fired() -> str | None:
            return await conn.fetchval("SELECT id FROM runs WHERE payload->>'scheduleId' = $1", schedule["id"])

        run_id = await eventually(fired, message="the schedule's run")
        run = await finished(http, run_id)
        assert run["status"] == "COMPLETED"
        assert run["output"]["external_id"] == "tenant-9" and run["output"]["type"] == "ScheduledPayload"
        assert run["output"]["upcoming"] == 5 and run["output"]["timezone"] == "UTC"
        assert await conn.fetchval("SELECT count(*) FROM runs WHERE payload->>'scheduleId' = $1", schedule["id"]) == 1
        # The run names its schedule, and the schedule lists its runs.
        assert run["schedule"]["id"] == schedule["id"] and run["schedule"]["externalId"] == "tenant-9"
        assert run["schedule"]["generator"]["expression"] == "* * * * *"
        async with http.get(f"/api/v1/runs?filter[schedule]={schedule['id']}") as response:
            listed = (await response.json())["data"]
        assert [r["id"] for r in listed] == [run_id] and listed[0]["scheduleId"] == schedule["id"]

        # Its trace begins at the tick, in the scheduler.
        async def traced() -> list[dict[str, Any]] | None:
            async with http.get(f"/api/v1/runs/{run_id}/spans") as response:
                spans: list[dict[str, Any]] = (await response.json())["data"]
            return spans if {"schedule", "attempt"} <= {s["name"] for s in spans} else None

        spans = await eventually(traced, message="the scheduled run's spans")
        tick = next(s for s in spans if s["name"] == "schedule")
        assert tick["service"] == "scheduler" and tick["parentSpanId"] is None and tick["runId"] == run_id
        assert tick["attributes"]["schedule"] == schedule["id"]
    finally:
        await conn.close()
