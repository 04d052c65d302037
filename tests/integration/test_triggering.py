"""The set-based trigger path against a real Postgres: many runs, one statement."""

from __future__ import annotations

import asyncpg
from slipstream_platform.store import runs as run_store
from slipstream_platform.store import schedules
from slipstream_platform.store.runs import NewRun

from tests.integration.test_store import add_worker


async def test_insert_many_resolves_status_and_queue_per_run(pool: asyncpg.Pool, env_id: str) -> None:
    await add_worker(pool, env_id, "w1", ["served"], 4)
    await schedules.register_tasks(pool, env_id, [("own-queue", False)], {"own-queue": "shared"})
    runs = [
        NewRun(environment_id=env_id, task_identifier="served", status=None, payload_json='{"i": 1}', queue=None,
               tags=["a", "b"]),
        NewRun(environment_id=env_id, task_identifier="unserved", status=None, payload_json="null", queue=None),
        NewRun(environment_id=env_id, task_identifier="own-queue", status=None, payload_json="2", queue=None,
               priority_ms=5000, ttl_seconds=60),
        NewRun(environment_id=env_id, task_identifier="served", status="DELAYED", payload_json="3", queue="picked",
               ttl_seconds=60, concurrency_key="tenant"),
    ]
    changed = await run_store.insert_many(pool, runs)
    assert [t.run_id for t in changed] == [r.id for r in runs]
    rows = {r["id"]: r for r in await pool.fetch(
        "SELECT id, status, queue, tags, concurrency_key, expires_at IS NOT NULL AS expires,"
        " created_at - queue_ts AS ahead FROM runs WHERE environment_id = $1", env_id)}
    got = [(rows[r.id]["status"], rows[r.id]["queue"]) for r in runs]
    assert got == [("QUEUED", "task/served"), ("PENDING_VERSION", "task/unserved"), ("PENDING_VERSION", "shared"),
                   ("DELAYED", "picked")]
    assert list(rows[runs[0].id]["tags"]) == ["a", "b"] and rows[runs[3].id]["concurrency_key"] == "tenant"
    assert rows[runs[2].id]["expires"] and not rows[runs[3].id]["expires"]  # a delayed run's ttl starts later
    assert rows[runs[2].id]["ahead"].total_seconds() >= 5


async def test_insert_many_skips_runs_whose_request_id_made_a_run(pool: asyncpg.Pool, env_id: str) -> None:
    first = NewRun(environment_id=env_id, task_identifier="t", status="QUEUED", payload_json="1", queue=None,
                   request_id="req-1")
    assert len(await run_store.insert_many(pool, [first])) == 1
    again = NewRun(environment_id=env_id, task_identifier="t", status="QUEUED", payload_json="1", queue=None,
                   request_id="req-1")
    other = NewRun(environment_id=env_id, task_identifier="t", status="QUEUED", payload_json="1", queue=None,
                   request_id="req-2")
    assert [t.run_id for t in await run_store.insert_many(pool, [again, other])] == [other.id]
    assert await run_store.insert_many(pool, []) == []


async def test_a_thousand_runs_are_one_statement(pool: asyncpg.Pool, env_id: str) -> None:
    runs = [NewRun(environment_id=env_id, task_identifier="bulk", status="QUEUED", payload_json=f'{{"i": {i}}}',
                   queue=None) for i in range(1000)]
    assert len(await run_store.insert_many(pool, runs)) == 1000
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE task_identifier = 'bulk'") == 1000
