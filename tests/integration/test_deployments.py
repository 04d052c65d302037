"""Versions against a real Postgres: who may take a run, locks, unlocking, schedules, listings."""

from __future__ import annotations

import asyncpg
import pytest
from slipstream_platform.store import attempts, claims, deployments, environments, workers
from slipstream_platform.store import runs as run_store
from slipstream_platform.store.attempts import StartRequest
from slipstream_platform.store.runs import NewRun


@pytest.fixture
async def prod(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        keys = await environments.bootstrap_project(conn, "versions")
    env = await environments.by_api_key(pool, keys["PRODUCTION"])
    assert env is not None
    return env.id


async def add_worker(pool: asyncpg.Pool, env_id: str, worker_id: str, version: str, tasks: list[str]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await workers.register(conn, worker_id=worker_id, environment_id=env_id, task_ids=tasks,
                               manifest_json="[]", capacity=4, version=version, hostname="h")
        await deployments.register(conn, env_id, version, tasks, "[]", "[]")


async def add_run(pool: asyncpg.Pool, env_id: str, task: str = "a", locked: str | None = None) -> str:
    made = await run_store.insert(pool, NewRun(environment_id=env_id, task_identifier=task, status="QUEUED",
                                               payload_json="{}", queue=f"task/{task}", locked_version=locked))
    assert made is not None
    return made.run_id


async def claim(pool: asyncpg.Pool, env_id: str, worker_id: str, tasks: list[str] | None = None) -> list[str]:
    taken = await claims.claim(pool, worker_id=worker_id, environment_id=env_id, task_ids=tasks or ["a"], capacity=4)
    return [r.id for r in taken.runs]


async def promote(pool: asyncpg.Pool, env_id: str, version: str) -> None:
    async with pool.acquire() as conn:
        assert await deployments.promote(conn, env_id, version)


async def test_before_a_deploy_every_live_worker_is_current_after_it_only_the_promoted_one(
        pool: asyncpg.Pool, prod: str) -> None:
    await add_worker(pool, prod, "w1", "v1", ["a"])
    await add_worker(pool, prod, "w2", "v2", ["a"])
    first = await add_run(pool, prod)
    assert await claim(pool, prod, "w1") == [first]  # no deploy yet: v1 is as current as v2
    await promote(pool, prod, "v2")
    second = await add_run(pool, prod)
    assert await claim(pool, prod, "w1") == []  # v1 drains: it takes no new run
    assert await claim(pool, prod, "w2") == [second]
    assert await workers.serves_task(pool, prod, "a")
    await workers.stop(pool, "w2")
    assert not await workers.serves_task(pool, prod, "a")  # v1 is live but not current
    assert await workers.serves_task(pool, prod, "a", "v1")
    assert await deployments.is_current(pool, prod, "v2") and not await deployments.is_current(pool, prod, "v1")


async def test_a_started_run_goes_back_only_to_its_version_until_none_is_left(pool: asyncpg.Pool, prod: str) -> None:
    await add_worker(pool, prod, "w1", "v1", ["a"])
    run_id = await add_run(pool, prod)
    assert await claim(pool, prod, "w1") == [run_id]
    started = await attempts.start(pool, worker_id="w1", starts=[StartRequest(run_id=run_id, default_max_attempts=3)])
    assert started and await pool.fetchval("SELECT locked_version FROM runs WHERE id = $1", run_id) == "v1"
    # A retry puts it back in the queue; a deploy of v2 comes meanwhile.
    await pool.execute("UPDATE runs SET status = 'QUEUED', worker_id = NULL WHERE id = $1", run_id)
    await add_worker(pool, prod, "w2", "v2", ["a"])
    await promote(pool, prod, "v2")
    assert await claim(pool, prod, "w2") == []  # locked to v1
    # v1's last worker goes: the lock is released and the current version takes the run.
    await workers.stop(pool, "w1")
    assert await deployments.unlock_orphaned(pool) == [prod]
    assert await deployments.unlock_orphaned(pool) == []
    assert await claim(pool, prod, "w2") == [run_id]
    await attempts.start(pool, worker_id="w2", starts=[StartRequest(run_id=run_id, default_max_attempts=3)])
    row = await pool.fetchrow("SELECT version, locked_version FROM runs WHERE id = $1", run_id)
    assert (row["version"], row["locked_version"]) == ("v2", "v2")


async def test_lock_to_version_is_strict(pool: asyncpg.Pool, prod: str) -> None:
    await add_worker(pool, prod, "w1", "v1", ["a"])
    await add_worker(pool, prod, "w2", "v2", ["a"])
    await promote(pool, prod, "v2")
    strict = await add_run(pool, prod, locked="v1")
    assert await pool.fetchval("SELECT lock_to_version FROM runs WHERE id = $1", strict)
    assert await claim(pool, prod, "w2") == []
    await workers.stop(pool, "w1")
    assert await deployments.unlock_orphaned(pool) == []  # asked for v1: it waits for a v1 worker
    await add_worker(pool, prod, "w3", "v1", ["a"])
    assert await claim(pool, prod, "w3") == [strict]


async def test_new_runs_wait_pending_version_for_the_promoted_version(pool: asyncpg.Pool, prod: str) -> None:
    await add_worker(pool, prod, "w1", "v1", ["a"])
    async with pool.acquire() as conn:
        await deployments.register(conn, prod, "v2", ["a"], None, None)  # `slipstream deploy` before workers
        await promote(pool, prod, "v2")
        made = await run_store.insert_many(conn, [NewRun(environment_id=prod, task_identifier="a", status=None,
                                                         payload_json="{}", queue=None)])
    assert [t.status for t in made] == ["PENDING_VERSION"]
    await add_worker(pool, prod, "w2", "v2", ["a"])
    promoted = await run_store.promote_pending_version(pool, prod)
    assert [t.run_id for t in promoted] == [made[0].run_id]


async def test_schedules_fire_only_for_the_current_deployment_or_a_running_dev_worker(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        keys = await environments.bootstrap_project(conn, "fires")
    envs = {t: await environments.by_api_key(pool, k) for t, k in keys.items()}
    dev, prod = envs["DEVELOPMENT"], envs["PRODUCTION"]
    assert dev is not None and prod is not None
    pairs = [(dev.id, "a"), (prod.id, "a"), (prod.id, "gone")]
    assert await deployments.schedules_fire(pool, pairs) == set()  # nothing registered, no worker
    await add_worker(pool, dev.id, "d1", "v1", ["a"])
    await add_worker(pool, prod.id, "p1", "v1", ["a", "gone"])
    assert await deployments.schedules_fire(pool, pairs) == set(pairs)
    await workers.stop(pool, "d1")
    await workers.stop(pool, "p1")
    # Dev: only while a worker runs. Before a deploy elsewhere: the version registered last.
    assert await deployments.schedules_fire(pool, pairs) == {(prod.id, "a"), (prod.id, "gone")}
    async with pool.acquire() as conn:
        await deployments.register(conn, prod.id, "v2", ["a"], None, None)
        await deployments.promote(conn, prod.id, "v2")
    await add_worker(pool, prod.id, "p2", "v1", ["a", "gone"])  # an old worker still running
    assert await deployments.schedules_fire(pool, pairs) == {(prod.id, "a")}


async def test_the_listing_says_current_draining_and_inactive(pool: asyncpg.Pool, prod: str) -> None:
    await add_worker(pool, prod, "w1", "v1", ["a"])
    listed = {d.version: d for d in await deployments.listing(pool, prod)}
    assert listed["v1"].status == "CURRENT" and listed["v1"].promoted_at is None  # no deploy yet
    run_id = await add_run(pool, prod)
    assert await claim(pool, prod, "w1") == [run_id]
    await attempts.start(pool, worker_id="w1", starts=[StartRequest(run_id=run_id, default_max_attempts=3)])
    await add_worker(pool, prod, "w2", "v2", ["a", "b"])
    await promote(pool, prod, "v2")
    listed = {d.version: d for d in await deployments.listing(pool, prod)}
    assert (listed["v1"].status, listed["v1"].unfinished_runs, listed["v1"].live_workers) == ("DRAINING", 1, 1)
    assert (listed["v2"].status, listed["v2"].task_ids, listed["v2"].promoted_at is not None) == (
        "CURRENT", ["a", "b"], True)
    await pool.execute("UPDATE runs SET status = 'COMPLETED' WHERE id = $1", run_id)
    [v1] = await deployments.listing(pool, prod, "v1")
    assert (v1.status, v1.unfinished_runs) == ("INACTIVE", 0)
    assert await deployments.known(pool, prod) == ["v2", "v1"]


async def add_regional_worker(pool: asyncpg.Pool, env_id: str, worker_id: str, region: str | None) -> None:
    async with pool.acquire() as conn:
        await workers.register(conn, worker_id=worker_id, environment_id=env_id, task_ids=["a"],
                               manifest_json="[]", capacity=4, version="v1", hostname="h", region=region)
        await deployments.register(conn, env_id, "v1", ["a"], "[]", "[]")


async def test_a_run_goes_only_to_workers_of_its_region(pool: asyncpg.Pool, prod: str) -> None:
    await add_regional_worker(pool, prod, "home", None)  # the default region
    await add_regional_worker(pool, prod, "eu", "eu-1")
    assert [r["name"] for r in await workers.regions(pool, prod)] == ["default", "eu-1"]
    made = await run_store.insert_many(pool, [
        NewRun(environment_id=prod, task_identifier="a", status=None, payload_json="{}", queue=None, region=region)
        for region in ("eu-1", None, "eu-1")])
    assert [t.status for t in made] == ["QUEUED"] * 3
    eu_runs, home_runs = [made[0].run_id, made[2].run_id], [made[1].run_id]
    assert sorted(await claim(pool, prod, "eu")) == sorted(eu_runs)
    assert await claim(pool, prod, "home") == home_runs
    # A region without a live worker: its runs wait PENDING_VERSION, as for a task nobody serves.
    await workers.stop(pool, "eu")
    assert not await workers.serves_task(pool, prod, "a", region="eu-1")
    assert await workers.serves_task(pool, prod, "a")
    # Moving the default moves the runs and workers that named none: `home` serves eu-1 now.
    await environments.set_limits(pool, prod, concurrency_limit=None, burst_factor=None, default_region="eu-1")
    assert await workers.serves_task(pool, prod, "a", region="eu-1")
    assert not await workers.serves_task(pool, prod, "a", region="default")
    assert [(r["name"], r["is_default"], r["live_workers"]) for r in await workers.regions(pool, prod)] == [
        ("eu-1", True, 1)]


async def test_triggers_name_known_regions_and_versions_only(pool: asyncpg.Pool, prod: str) -> None:
    from datetime import UTC, datetime

    from slipstream_platform.triggering import RunPlan, TriggerRejected, check_routing, plan_run
    from slipstream_proto import TriggerOptions

    await add_regional_worker(pool, prod, "eu", "eu-1")

    def plan(**options: str) -> RunPlan:
        return plan_run("a", {}, TriggerOptions(**options), environment_type="PRODUCTION", now=datetime.now(UTC))

    await check_routing(pool, prod, [plan(region="eu-1"), plan(region="default"), plan(lock_to_version="v1")])
    with pytest.raises(TriggerRejected, match=r"items\[3\]: region 'mars' is not a region .* known: default, eu-1"):
        await check_routing(pool, prod, [plan(), plan(region="mars")], first_index=2)
    with pytest.raises(TriggerRejected, match="lockToVersion 'v9' is not a version .* known: v1"):
        await check_routing(pool, prod, [plan(lock_to_version="v9")])
    with pytest.raises(TriggerRejected, match="is not a region name"):
        plan(region="EU 1")


async def test_a_lock_is_released_when_no_worker_of_its_version_serves_the_runs_region(
        pool: asyncpg.Pool, prod: str) -> None:
    await add_regional_worker(pool, prod, "eu", "eu-1")  # version v1
    await add_regional_worker(pool, prod, "home", None)  # v1 too, in the default region
    made = await run_store.insert(pool, NewRun(environment_id=prod, task_identifier="a", status="QUEUED",
                                               payload_json="{}", queue="task/a", region="eu-1"))
    assert made is not None
    await pool.execute("UPDATE runs SET locked_version = 'v1' WHERE id = $1", made.run_id)  # it had started
    assert await deployments.unlock_orphaned(pool) == []
    await workers.stop(pool, "eu")  # v1 lives on, but not in eu-1
    assert await deployments.unlock_orphaned(pool) == [prod]
    assert await pool.fetchval("SELECT locked_version FROM runs WHERE id = $1", made.run_id) is None
