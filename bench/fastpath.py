"""The fast-path method, measured on Slipstream as a user would (issue 9).

Every run's task returns `time.time()` taken as its first line (bench/stamp_tasks.py); the
producer takes `time.time()` right before `await tasks.trigger(...)`.

- latency: N triggers one at a time, `spacing` apart: function entry minus the producer's
  stamp; the trigger call's own duration; and where the time goes, hop by hop, from the run's
  Postgres timestamps (same clock: one machine).
- live: the worker warm; one producer triggers N runs back to back; runs/s = N / (last
  COMPLETED in Postgres - first trigger).
- drain: no worker; N runs triggered; then the supervisor starts; runs/s = N / (last
  completion - first function entry).
- concurrent: N runs from 32 concurrent callers with the worker running, to the last completion.
- memory: the whole platform's PSS idle, and its growth with 10,000 queued runs.
- set-based: 1,000 runs planned (`plan_run`), inserted with one statement and committed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import slipstream
from slipstream import queues, tasks
from slipstream_platform.local import LocalPlatform

from bench.common import pct, pss_bytes

TASKS = "bench.stamp_tasks"


async def wait_completed(conn: asyncpg.Connection, task_id: str, n: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = await conn.fetchval(
            "SELECT count(*) FROM runs WHERE task_identifier = $1 AND status = 'COMPLETED'", task_id
        )
        if done >= n:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{task_id}: not all {n} runs completed within {timeout}s")


async def latency(conn: asyncpg.Connection, n: int, spacing: float) -> dict[str, float]:
    stamps: dict[str, float] = {}
    calls: list[float] = []
    for i in range(n):
        before = time.time()
        handle = await tasks.trigger("stamp-latency", {"i": i})
        after = time.time()
        stamps[handle.id] = before
        calls.append((after - before) * 1000)
        await asyncio.sleep(max(0.0, spacing - (time.time() - before)))
    await wait_completed(conn, "stamp-latency", n)
    rows = await conn.fetch(
        "SELECT r.id, r.output::text::float8 AS entry, extract(epoch FROM r.created_at)::float8 AS created,"
        " extract(epoch FROM r.dequeued_at)::float8 AS dequeued, extract(epoch FROM a.started_at)::float8 AS started"
        " FROM runs r JOIN attempts a ON a.run_id = r.id AND a.number = 1 WHERE r.task_identifier = 'stamp-latency'"
    )
    entry = sorted((r["entry"] - stamps[r["id"]]) * 1000 for r in rows)
    hops = {
        "client_to_row": sorted((r["created"] - stamps[r["id"]]) * 1000 for r in rows),
        "row_to_dequeued": sorted((r["dequeued"] - r["created"]) * 1000 for r in rows),
        "dequeued_to_started": sorted((r["started"] - r["dequeued"]) * 1000 for r in rows),
        "started_to_entry": sorted((r["entry"] - r["started"]) * 1000 for r in rows),
    }
    calls.sort()
    result = {f"lat_p{p}": pct(entry, p) for p in (50, 95, 99)}
    result |= {"lat_max": entry[-1], "call_p50": pct(calls, 50), "call_p99": pct(calls, 99)}
    result |= {f"hop_{name}": pct(values, 50) for name, values in hops.items()}
    return result


async def live(conn: asyncpg.Connection, n: int) -> float:
    first = time.time()
    for i in range(n):
        await tasks.trigger("stamp-live", {"i": i})
    await wait_completed(conn, "stamp-live", n)
    last = await conn.fetchval(
        "SELECT extract(epoch FROM max(finished_at))::float8 FROM runs WHERE task_identifier = 'stamp-live'"
    )
    return n / (last - first)


async def concurrent(conn: asyncpg.Connection, n: int, callers: int) -> float:
    pending = iter(range(n))
    first = time.time()

    async def caller() -> None:
        for i in pending:
            await tasks.trigger("stamp-concurrent", {"i": i})

    await asyncio.gather(*(caller() for _ in range(callers)))
    await wait_completed(conn, "stamp-concurrent", n)
    last = await conn.fetchval(
        "SELECT extract(epoch FROM max(finished_at))::float8 FROM runs WHERE task_identifier = 'stamp-concurrent'"
    )
    return n / (last - first)


async def trigger_many(task_id: str, n: int, callers: int = 32) -> None:
    pending = iter(range(n))

    async def caller() -> None:
        for i in pending:
            await tasks.trigger(task_id, {"i": i})

    await asyncio.gather(*(caller() for _ in range(callers)))


def start_supervisor(local: LocalPlatform, key: str, concurrency: int) -> None:
    local.start_service("supervisor", {"SLIPSTREAM_TASKS": TASKS, "SLIPSTREAM_SECRET_KEY": key,
                                       "SLIPSTREAM_CONCURRENCY": str(concurrency)})
    local.wait_healthy(["supervisor"])


async def drain(local: LocalPlatform, conn: asyncpg.Connection, key: str, n: int, concurrency: int) -> float:
    local.stop_service("supervisor")
    await trigger_many("stamp-drain", n)
    start_supervisor(local, key, concurrency)
    await wait_completed(conn, "stamp-drain", n)
    row = await conn.fetchrow(
        "SELECT min(output::text::float8) AS first, extract(epoch FROM max(finished_at))::float8 AS last"
        " FROM runs WHERE task_identifier = 'stamp-drain'"
    )
    return n / (row["last"] - row["first"])


def platform_pids(local: LocalPlatform) -> list[int]:
    pids = [p.pid for p in local.processes.values()]
    for server in (local.nats.proc, local.postgres.proc):
        if server is not None:
            pids.append(server.pid)
    return pids


async def memory(local: LocalPlatform, conn: asyncpg.Connection, n: int) -> dict[str, float]:
    """PSS of everything (services, worker processes, NATS, Postgres) idle, and with `n` queued runs."""
    await asyncio.sleep(2)  # let the last burst's buffers settle
    idle = pss_bytes(platform_pids(local))
    size = "SELECT pg_total_relation_size('runs') + pg_total_relation_size('attempts')"
    disk_before = await conn.fetchval(size)
    await queues.pause("task/stamp-memory")  # the runs stay QUEUED
    await trigger_many("stamp-memory", n)
    await asyncio.sleep(2)
    queued = pss_bytes(platform_pids(local))
    disk_after = await conn.fetchval(size)
    return {"idle_mb": idle / 2**20, "queued_mb": (queued - idle) / 2**20,
            "queued_disk_mb": (disk_after - disk_before) / 2**20}


async def set_based(conn: asyncpg.Connection, environment_id: str, n: int = 1000, repeats: int = 5) -> float:
    """Milliseconds to plan, insert and commit `n` runs with the set-based path (median of `repeats`)."""
    from slipstream_platform.store import runs as run_store
    from slipstream_platform.triggering import new_run, plan_run

    took = []
    for r in range(repeats):
        started = time.perf_counter()
        now = datetime.now(UTC)
        plans = [plan_run("stamp-set-based", {"i": i, "r": r}, None, environment_type="DEVELOPMENT", now=now)
                 for i in range(n)]
        created = await run_store.insert_many(conn, [
            new_run(plan, environment_id=environment_id, status=None, parent=None, traceparent=None)
            for plan in plans])
        took.append((time.perf_counter() - started) * 1000)
        assert len(created) == n
    await conn.execute("DELETE FROM runs WHERE task_identifier = 'stamp-set-based'")
    return statistics.median(took)


async def measure(local: LocalPlatform, key: str, *, runs: int, latency_runs: int = 200,
                  spacing: float = 0.02, callers: int = 32, concurrency: int = 16,
                  memory_runs: int = 0, set_based_runs: bool = False, concurrent_runs: bool = True,
                  ) -> dict[str, Any]:
    """One round of every measurement on a started platform."""
    slipstream.configure(api_url=local.api_url, secret_key=key, realtime_url=local.realtime_url)
    conn = await asyncpg.connect(local.database_url)
    try:
        for _ in range(50):
            await tasks.trigger("stamp-warmup", {})
        await wait_completed(conn, "stamp-warmup", 50)
        results: dict[str, Any] = await latency(conn, latency_runs, spacing)
        results["live_rps"] = await live(conn, runs)
        if concurrent_runs:
            results["concurrent_rps"] = await concurrent(conn, runs, callers)
        results["drain_rps"] = await drain(local, conn, key, runs, concurrency)
        if set_based_runs:
            # Here, not at the top: bench/compare.py runs this file against older commits too.
            from slipstream_platform.store.environments import key_hash

            environment_id = await conn.fetchval("SELECT environment_id FROM api_keys WHERE key_hash = $1",
                                                 key_hash(key))
            results["set_based_ms"] = await set_based(conn, environment_id)
        if memory_runs:
            results |= await memory(local, conn, memory_runs)
        return results
    finally:
        await conn.close()
