"""Firing schedules against a real Postgres: one run per tick, even when replicas race."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
from slipstream_core.definitions import QueueDefinition, ScheduleDeclaration, TaskDefinition
from slipstream_platform import scheduling
from slipstream_platform.store import deployments, environments, schedules


async def make_schedule(pool: asyncpg.Pool, cron: str, next_run_at: datetime) -> tuple[str, str]:
    async with pool.acquire() as conn:
        keys = await environments.bootstrap_project(conn, "sched")
        env = await environments.by_api_key(conn, keys["PRODUCTION"])
        assert env is not None
        await schedules.register_tasks(conn, env.id, [("report", True)])
        # A worker registered version v1 with the task (no deploy yet): its schedules fire.
        await deployments.register(conn, env.id, "v1", ["report"], "[]", "[]")
        row = await schedules.upsert(conn, environment_id=env.id, task_identifier="report", type="IMPERATIVE",
                                     cron=cron, timezone="UTC", external_id="tenant-1",
                                     deduplication_key="tenant-1-report", next_run_at=next_run_at)
    return env.id, row["id"]


async def fire(pool: asyncpg.Pool, now: datetime) -> int:
    async with pool.acquire() as conn:
        return len(await scheduling.fire_due(conn, now))


async def test_racing_replicas_create_one_run_per_tick(pool: asyncpg.Pool) -> None:
    tick = datetime(2026, 1, 1, 12, tzinfo=UTC)
    env_id, schedule_id = await make_schedule(pool, "0 * * * *", tick)
    created = await asyncio.gather(*(fire(pool, tick + timedelta(seconds=1)) for _ in range(5)))
    assert sum(created) == 1
    runs = await pool.fetch("SELECT payload, schedule_id FROM runs WHERE environment_id = $1", env_id)
    assert len(runs) == 1
    payload = json.loads(runs[0]["payload"])
    assert payload["scheduleId"] == schedule_id and payload["timestamp"] == tick.isoformat()
    assert runs[0]["schedule_id"] == schedule_id  # what filter[schedule] lists by
    assert payload["lastTimestamp"] is None and payload["externalId"] == "tenant-1"
    assert len(payload["upcoming"]) == 5 and payload["type"] == "IMPERATIVE"
    row = await pool.fetchrow("SELECT last_run_at, next_run_at FROM schedules WHERE id = $1", schedule_id)
    assert row["last_run_at"] == tick and row["next_run_at"] == tick + timedelta(hours=1)
    # Nothing more until the next tick.
    assert await fire(pool, tick + timedelta(minutes=30)) == 0


async def test_after_downtime_the_latest_missed_tick_fires_once(pool: asyncpg.Pool) -> None:
    start = datetime(2026, 1, 1, 0, tzinfo=UTC)
    env_id, schedule_id = await make_schedule(pool, "0 * * * *", start)
    assert await fire(pool, start + timedelta(hours=5, minutes=10)) == 1
    payload = json.loads(await pool.fetchval("SELECT payload FROM runs WHERE environment_id = $1", env_id))
    assert payload["timestamp"] == (start + timedelta(hours=5)).isoformat()
    next_run = await pool.fetchval("SELECT next_run_at FROM schedules WHERE id = $1", schedule_id)
    assert next_run == start + timedelta(hours=6)


async def test_declarative_schedules_follow_the_code(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        keys = await environments.bootstrap_project(conn, "declared")
        env = await environments.by_api_key(conn, keys["STAGING"])
        assert env is not None

        async def sync(tasks: list[TaskDefinition]) -> dict[str, str]:
            async with conn.transaction():
                await scheduling.sync_schedules(conn, env, tasks)
            rows = await conn.fetch("SELECT task_identifier, cron FROM schedules WHERE environment_id = $1", env.id)
            return {r["task_identifier"]: r["cron"] for r in rows}

        def defined(task_id: str, schedule: ScheduleDeclaration | None = None) -> TaskDefinition:
            return TaskDefinition(id=task_id, queue=QueueDefinition(name=f"task/{task_id}"), schedule=schedule)

        hourly = defined("hourly", ScheduleDeclaration(cron="0 * * * *", timezone="UTC"))
        prod_only = defined("prod-only", ScheduleDeclaration(cron="0 0 * * *", environments=["PRODUCTION"]))
        attached = defined("attached-later", ScheduleDeclaration())
        assert await sync([hourly, prod_only, attached, defined("plain")]) == {"hourly": "0 * * * *"}
        assert await schedules.task_kind(conn, env.id, "attached-later") is True
        assert await schedules.task_kind(conn, env.id, "plain") is False
        # Changed with the code, then removed with it.
        changed = defined("hourly", ScheduleDeclaration(cron="30 * * * *", timezone="UTC"))
        assert await sync([changed]) == {"hourly": "30 * * * *"}
        assert await sync([defined("hourly")]) == {}


async def test_a_batch_of_schedules_fires_with_one_run_each_and_a_bad_one_is_skipped(pool: asyncpg.Pool) -> None:
    tick = datetime(2026, 3, 1, 9, tzinfo=UTC)
    async with pool.acquire() as conn:
        keys = await environments.bootstrap_project(conn, "many")
        env = await environments.by_api_key(conn, keys["PRODUCTION"])
        assert env is not None
        await schedules.register_tasks(conn, env.id, [("report", True)])
        # A worker registered version v1 with the task (no deploy yet): its schedules fire.
        await deployments.register(conn, env.id, "v1", ["report"], "[]", "[]")
        zones = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"]
        for i in range(200):
            await schedules.upsert(conn, environment_id=env.id, task_identifier="report", type="IMPERATIVE",
                                   cron="*/5 * * * *", timezone=zones[i % 4], external_id=f"t{i}",
                                   deduplication_key=f"t{i}", next_run_at=tick)
        # A schedule whose task id cannot be triggered: skipped (and moved on), the others fire.
        await conn.execute("INSERT INTO schedules (id, environment_id, task_identifier, type, cron, timezone,"
                           " deduplication_key, next_run_at) VALUES ('sched_bad', $1, 'bad id', 'IMPERATIVE',"
                           " '*/5 * * * *', 'UTC', 'bad', $2)", env.id, tick)
    assert await fire(pool, tick + timedelta(seconds=2)) == 200
    rows = await pool.fetch("SELECT payload, status FROM runs WHERE environment_id = $1", env.id)
    assert len({json.loads(r["payload"])["externalId"] for r in rows}) == 200
    assert {r["status"] for r in rows} == {"PENDING_VERSION"}  # no worker serves `report`
    assert all(json.loads(r["payload"])["timestamp"] == tick.isoformat() for r in rows)
    assert await pool.fetchval("SELECT count(*) FROM schedules WHERE environment_id = $1 AND next_run_at = $2",
                               env.id, tick + timedelta(minutes=5)) == 201
    # The same tick again creates nothing, even if a schedule's next tick is put back.
    await pool.execute("UPDATE schedules SET next_run_at = $1 WHERE external_id = 't7'", tick)
    assert await fire(pool, tick + timedelta(seconds=3)) == 0
