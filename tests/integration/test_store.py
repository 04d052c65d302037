"""Store modules against a real Postgres: every status change is guarded."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from slipstream_platform.store import attempts, claims, environments, workers
from slipstream_platform.store import runs as run_store
from slipstream_platform.store.attempts import AttemptEnd, StartedAttempt, StartRequest
from slipstream_platform.store.runs import NewRun, Transition
from slipstream_platform.views import load_run


async def add_run(pool: asyncpg.Pool, env_id: str, task: str = "t", status: str = "QUEUED", **kw: object) -> str:
    params: dict[str, object] = dict(environment_id=env_id, task_identifier=task, status=status,
                                     payload_json='{"a": 1}', queue=f"task/{task}")
    params.update(kw)
    transition = await run_store.insert(pool, NewRun(**params))  # type: ignore[arg-type]
    assert transition is not None
    return transition.run_id


async def add_worker(pool: asyncpg.Pool, env_id: str, worker_id: str, tasks: list[str], capacity: int) -> None:
    async with pool.acquire() as conn:
        await workers.register(conn, worker_id=worker_id, environment_id=env_id, task_ids=tasks,
                               manifest_json="[]", capacity=capacity, version="v", hostname="h")


async def claim(pool: asyncpg.Pool, env_id: str, worker_id: str, tasks: list[str], capacity: int) -> list[str]:
    taken = await claims.claim(pool, worker_id=worker_id, environment_id=env_id, task_ids=tasks, capacity=capacity)
    return [run.id for run in taken.runs]


async def start(pool: asyncpg.Pool, run_id: str, worker_id: str, default_max: int = 3) -> StartedAttempt | None:
    started = await attempts.start(pool, worker_id=worker_id,
                                   starts=[StartRequest(run_id=run_id, default_max_attempts=default_max)])
    return started[0] if started else None


async def runs_index_entries_read(conn: asyncpg.Connection) -> int:
    """Index entries of `runs` read so far (this session's counts are flushed first)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")  # flushed before the statement returns
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    read: int = await conn.fetchval("SELECT sum(idx_tup_read) FROM pg_stat_user_indexes WHERE relname = 'runs'")
    return read


async def end(pool: asyncpg.Pool, run_id: str, number: int, status: str, **fields: Any) -> Transition | None:
    """Record one attempt's end (attempt status from the run's: COMPLETED, CRASHED or FAILED)."""
    attempt_status = status if status in ("COMPLETED", "CRASHED") else "FAILED"
    changed = await attempts.finish(pool, [AttemptEnd(run_id=run_id, attempt_number=number, status=status,
                                                      attempt_status=attempt_status, **fields)])
    return changed[0] if changed else None


async def status(pool: asyncpg.Pool, run_id: str) -> str:
    return str(await pool.fetchval("SELECT status FROM runs WHERE id = $1", run_id))


async def test_bootstrap_is_idempotent_and_keys_are_per_environment_and_kept_hashed(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        first = await environments.bootstrap_project(conn, "p")
        again = await environments.bootstrap_project(conn, "p")
    assert again == {}  # the environments exist; their keys are not kept, so not shown again
    assert set(first) == {"DEVELOPMENT", "STAGING", "PRODUCTION", "PREVIEW"}
    assert first["DEVELOPMENT"].startswith("sk_dev_") and first["PRODUCTION"].startswith("sk_prod_")
    assert len(set(first.values())) == 4
    assert await pool.fetchval("SELECT count(*) FROM environments") == 4
    assert await environments.by_api_key(pool, "sk_dev_wrong") is None
    # Nothing in the database is a key: only hashes, and prefix plus last four to tell them apart.
    dump = " ".join(str(tuple(r)) for r in await pool.fetch("SELECT * FROM api_keys"))
    dump += " ".join(str(tuple(r)) for r in await pool.fetch("SELECT * FROM environments"))
    assert not any(key in dump or key[8:] in dump for key in first.values())
    displays = {r["display"] for r in await pool.fetch("SELECT display FROM api_keys")}
    assert f"sk_dev_…{first['DEVELOPMENT'][-4:]}" in displays


async def test_a_rotated_key_keeps_working_for_its_grace_then_stops(pool: asyncpg.Pool) -> None:
    from datetime import timedelta

    async with pool.acquire() as conn:
        keys = await environments.bootstrap_project(conn, "rotating")
        old = keys["PRODUCTION"]
        env = await environments.of_project(conn, "rotating", "PRODUCTION")
        new = await environments.rotate_key(conn, env, timedelta(hours=1))
        assert new != old and new.startswith("sk_prod_")
        assert await environments.by_api_key(conn, old) == env == await environments.by_api_key(conn, new)
        found = await environments.with_signers(conn, env.id)
        assert found is not None and found[1] == [environments.key_hash(new), environments.key_hash(old)]
        # The grace runs out (a rotation with 0s ends it at once): the old key no longer works.
        newest = await environments.rotate_key(conn, env, timedelta(0))
        assert await environments.by_api_key(conn, old) is None and await environments.by_api_key(conn, new) is None
        assert await environments.by_api_key(conn, newest) == env
        states = [(r["display"][-4:], r["expired"]) for r in await environments.keys_of(conn, env.id)]
        assert states == [(newest[-4:], False), (new[-4:], True), (old[-4:], True)]
        with pytest.raises(LookupError, match="no PRODUCTION environment in project 'nope'"):
            await environments.of_project(conn, "nope", "PRODUCTION")


async def test_claim_takes_ready_runs_in_order_up_to_free_slots(pool: asyncpg.Pool, env_id: str) -> None:
    ids = [await add_run(pool, env_id) for _ in range(5)]
    other = await add_run(pool, env_id, task="other")
    await add_worker(pool, env_id, "w1", ["t"], 3)
    assert await claim(pool, env_id, "w1", ["t"], 3) == ids[:3]
    # Full: nothing more until a slot frees.
    assert await claim(pool, env_id, "w1", ["t"], 3) == []
    started = await start(pool, ids[0], "w1")
    assert started is not None
    assert await end(pool, ids[0], 1, "COMPLETED", output_json='"ok"')
    assert await claim(pool, env_id, "w1", ["t"], 3) == [ids[3]]
    assert await status(pool, other) == "QUEUED"


async def test_priority_moves_a_run_ahead(pool: asyncpg.Pool, env_id: str) -> None:
    first = await add_run(pool, env_id)
    urgent = await add_run(pool, env_id, priority_ms=60_000)
    await add_worker(pool, env_id, "w1", ["t"], 1)
    assert await claim(pool, env_id, "w1", ["t"], 1) == [urgent]
    assert first


async def test_concurrent_claims_never_exceed_capacity(pool: asyncpg.Pool, env_id: str) -> None:
    for _ in range(40):
        await add_run(pool, env_id)
    await add_worker(pool, env_id, "w1", ["t"], 4)
    results = await asyncio.gather(*(claim(pool, env_id, "w1", ["t"], 4) for _ in range(8)))
    claimed = [run_id for batch in results for run_id in batch]
    assert len(claimed) == 4
    assert len(set(claimed)) == 4


async def test_attempt_lifecycle_retry_then_success(pool: asyncpg.Pool, env_id: str) -> None:
    run_id = await add_run(pool, env_id)
    await add_worker(pool, env_id, "w1", ["t"], 1)
    assert await claim(pool, env_id, "w1", ["t"], 1) == [run_id]
    started = await start(pool, run_id, "w1", default_max=2)
    assert started is not None
    assert started.status == "EXECUTING" and started.attempt_number == 1 and started.max_attempts == 2
    assert started.attempt_id.startswith("attempt_")
    # A repeated dispatch starts nothing.
    assert await start(pool, run_id, "w1") is None
    retry_at = datetime.now(UTC) + timedelta(milliseconds=200)
    t = await end(pool, run_id, 1, "QUEUED", error_json='{"name": "E", "message": "boom"}', retry_at=retry_at)
    assert t is not None and t.status == "QUEUED"
    # Not ready before its back-off ends.
    assert await claim(pool, env_id, "w1", ["t"], 1) == []
    await pool.execute("UPDATE runs SET available_at = now() WHERE id = $1", run_id)
    assert await claim(pool, env_id, "w1", ["t"], 1) == [run_id]
    started = await start(pool, run_id, "w1")
    assert started is not None and started.attempt_number == 2
    done = await end(pool, run_id, 2, "COMPLETED", output_json='{"x": 1}')
    assert done is not None and done.status == "COMPLETED"
    # Final: no further change is accepted.
    assert await end(pool, run_id, 2, "FAILED", error_json="{}") is None
    run = await load_run(pool, env_id, run_id)
    assert run is not None
    assert [a.status for a in run.attempts] == ["FAILED", "COMPLETED"]
    assert run.attempts[0].error is not None and run.attempts[0].error.message == "boom"
    assert run.is_success and run.is_completed and not run.is_failed
    assert json.loads(bytes(run.output)) == {"x": 1}  # type: ignore[arg-type]


async def test_crash_ends_crashed_without_retry(pool: asyncpg.Pool, env_id: str) -> None:
    run_id = await add_run(pool, env_id)
    await add_worker(pool, env_id, "w1", ["t"], 1)
    await claim(pool, env_id, "w1", ["t"], 1)
    await start(pool, run_id, "w1")
    t = await end(pool, run_id, 1, "CRASHED", error_json='{"message": "x"}')
    assert t is not None and t.status == "CRASHED"
    assert await pool.fetchval("SELECT status FROM attempts WHERE run_id = $1", run_id) == "CRASHED"


async def test_runs_on_a_stopped_worker_are_recovered(pool: asyncpg.Pool, env_id: str) -> None:
    waiting, running, last_try = [await add_run(pool, env_id) for _ in range(3)]
    await add_worker(pool, env_id, "w1", ["t"], 3)
    await claim(pool, env_id, "w1", ["t"], 3)
    await start(pool, running, "w1", default_max=3)
    await start(pool, last_try, "w1", default_max=1)
    await pool.execute("UPDATE workers SET heartbeat_at = now() - interval '1 minute'")
    async with pool.acquire() as conn:
        assert await workers.stop_silent(conn, 10) == ["w1"]
        async with conn.transaction():
            changed = {t.run_id: t.status for t in await run_store.recover_from_stopped_workers(conn)}
        assert changed == {waiting: "QUEUED", running: "QUEUED", last_try: "SYSTEM_FAILURE"}
        # Idempotent: a second pass changes nothing.
        async with conn.transaction():
            assert await run_store.recover_from_stopped_workers(conn) == []
    assert await pool.fetchval("SELECT status FROM attempts WHERE run_id = $1", running) == "FAILED"
    assert not await workers.heartbeat(pool, "w1")


async def test_pending_version_is_promoted_when_a_worker_serves_the_task(pool: asyncpg.Pool, env_id: str) -> None:
    run_id = await add_run(pool, env_id, task="late", status="PENDING_VERSION")
    assert await run_store.promote_pending_version(pool) == []
    await add_worker(pool, env_id, "w1", ["late"], 1)
    assert await workers.serves_task(pool, env_id, "late")
    promoted = await run_store.promote_pending_version(pool, env_id)
    assert [(t.run_id, t.status) for t in promoted] == [(run_id, "QUEUED")]


async def test_due_delayed_runs_are_queued(pool: asyncpg.Pool, env_id: str) -> None:
    now = datetime.now(UTC)
    due = await add_run(pool, env_id, status="DELAYED", delayed_until=now - timedelta(seconds=1))
    later = await add_run(pool, env_id, status="DELAYED", delayed_until=now + timedelta(hours=1))
    unserved = await add_run(pool, env_id, task="nobody", status="DELAYED", delayed_until=now - timedelta(seconds=1))
    await add_worker(pool, env_id, "w1", ["t"], 1)
    changed = {t.run_id: t.status for t in await run_store.promote_due_delayed(pool)}
    assert changed == {due: "QUEUED", unserved: "PENDING_VERSION"}
    assert await status(pool, later) == "DELAYED"


async def test_the_next_due_time_reads_one_entry_after_a_burst_of_delayed_runs(pool: asyncpg.Pool, env_id: str) -> None:
    # Statistics taken while no run was delayed, then 5,000 delayed runs (migration 0021).
    for _ in range(20):
        await add_run(pool, env_id, status="COMPLETED")
    await pool.execute("ANALYZE runs")
    first = datetime.now(UTC) + timedelta(minutes=5)
    await pool.execute(
        "INSERT INTO runs (id, environment_id, task_identifier, status, payload, queue, delayed_until)"
        " SELECT 'run_delayed_' || i, $1, 't', 'DELAYED', '{}'::jsonb, 'task/t', $2::timestamptz + i * interval '1 ms'"
        " FROM generate_series(0, 4999) AS i", env_id, first)
    async with pool.acquire() as conn:
        before = await runs_index_entries_read(conn)
        assert await run_store.next_due(conn) == first
        read = await runs_index_entries_read(conn) - before
    assert read < 50, f"next_due read {read} index entries"


async def test_stale_dequeued_runs_are_requeued(pool: asyncpg.Pool, env_id: str) -> None:
    run_id = await add_run(pool, env_id)
    await add_worker(pool, env_id, "w1", ["t"], 1)
    await claim(pool, env_id, "w1", ["t"], 1)
    assert await run_store.requeue_dequeued(pool, older_than_seconds=60) == []
    await pool.execute("UPDATE runs SET dequeued_at = now() - interval '2 minutes'")
    requeued = await run_store.requeue_dequeued(pool, older_than_seconds=60)
    assert [t.run_id for t in requeued] == [run_id]
    # The late dispatch can no longer start it.
    assert await start(pool, run_id, "w1") is None


async def test_the_environment_limit_and_round_robin_across_keys(pool: asyncpg.Pool, env_id: str) -> None:
    await pool.execute("UPDATE environments SET concurrency_limit = 3, burst_factor = 1 WHERE id = $1", env_id)
    await pool.execute("INSERT INTO queues (environment_id, name, concurrency_limit) VALUES ($1, 'task/t', 2)", env_id)
    tenant_a = [await add_run(pool, env_id, concurrency_key="a") for _ in range(4)]
    tenant_b = [await add_run(pool, env_id, concurrency_key="b") for _ in range(2)]
    await add_worker(pool, env_id, "w1", ["t"], 10)
    # Round-robin across keys, two per key (the queue's limit), three in all (the environment's).
    first = await claim(pool, env_id, "w1", ["t"], 10)
    assert set(first) == {tenant_a[0], tenant_b[0], tenant_a[1]}
    assert await claim(pool, env_id, "w1", ["t"], 10) == []
    await pool.execute("UPDATE environments SET concurrency_limit = 10 WHERE id = $1", env_id)
    assert await claim(pool, env_id, "w1", ["t"], 10) == [tenant_b[1]]
