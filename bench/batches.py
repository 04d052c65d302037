"""Batch benchmarks: `make bench` (writes their section of docs/benchmarks.md).

On one fresh local platform (one supervisor, 16 worker processes, default durability):

1. Accepting a batch of 1,000: `await task.batch_trigger(items)` through the SDK, 20 calls one
   after the other, timed by the caller (the task's queue is paused, so only the acceptance is
   measured: the one transaction that creates the 1,000 runs and the batch).
2. Fan-out: 10 parents each `batch_trigger_and_wait` 1,000 children (10,000 children); children
   completed per second, from the first trigger to the last child's completion.
3. Child done -> parent running again: 50 parents one after the other, each `trigger_and_wait`
   one child; the parent stamps `time.time()` when the wait returns (its replay resumed), minus
   the child's `finished_at` in Postgres (the same clock). Also for the fan-out's parents: the
   stamp minus their last child's `finished_at`.
4. Memory of 10,000 runs WAITING at once (each in a one-hour wait): PSS of every process of the
   platform, before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import slipstream  # noqa: E402
from slipstream import queues, tasks  # noqa: E402
from slipstream_platform.local import LocalPlatform  # noqa: E402

from bench.common import commit, machine, on_platform, pct, pss_bytes, write_section  # noqa: E402
from bench.fastpath import platform_pids  # noqa: E402


async def until(conn: asyncpg.Connection, query: str, target: int, timeout: float = 600, *args: Any) -> None:
    deadline = time.monotonic() + timeout
    while await conn.fetchval(query, *args) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{query} did not reach {target}")
        await asyncio.sleep(0.05)


async def accept(calls: int, size: int) -> dict[str, float]:
    await queues.pause("task/batch-noop")
    items = [{"payload": {"i": i}} for i in range(size)]
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        handle = await tasks.batch_trigger("batch-noop", items)
        times.append((time.perf_counter() - started) * 1000)
        assert len(handle.runs) == size
    return {"accept_p50": statistics.median(times), "accept_p99": pct(sorted(times), 99), "accept_min": min(times)}


async def fan_out(conn: asyncpg.Connection, parents: int, children: int) -> dict[str, float]:
    started = time.time()
    handles = [await tasks.trigger("batch-parent", {"n": children}) for _ in range(parents)]
    ids = [h.id for h in handles]
    await until(conn, "SELECT count(*) FROM runs WHERE id = ANY($1::text[]) AND status = 'COMPLETED'", parents,
                900, ids)
    last_child = await conn.fetchval(
        "SELECT max(extract(epoch FROM c.finished_at))::float8 FROM runs c"
        " WHERE c.parent_run_id = ANY($1::text[])", ids)
    resumes = await conn.fetch(
        "SELECT (p.output->>'resumed_at')::float8 - (SELECT max(extract(epoch FROM c.finished_at))::float8 FROM runs c"
        "   WHERE c.parent_run_id = p.id) AS lag FROM runs p WHERE p.id = ANY($1::text[])", ids)
    lags = [r["lag"] * 1000 for r in resumes]
    return {"fanout_rps": parents * children / (last_child - started), "fanout_resume_p50": statistics.median(lags)}


async def resume(conn: asyncpg.Connection, n: int) -> dict[str, float]:
    lags = []
    for _ in range(n):
        handle = await tasks.trigger("one-parent", None)
        await until(conn, "SELECT count(*) FROM runs WHERE id = $1 AND status = 'COMPLETED'", 1, 60, handle.id)
        lag = await conn.fetchval(
            "SELECT ((p.output->>'resumed_at')::float8 - extract(epoch FROM c.finished_at))::float8"
            " FROM runs p JOIN runs c ON c.id = p.output->>'child' WHERE p.id = $1", handle.id)
        lags.append(lag * 1000)
    return {"resume_p50": statistics.median(lags), "resume_p99": pct(sorted(lags), 99)}


async def waiting_memory(local: LocalPlatform, conn: asyncpg.Connection, n: int) -> dict[str, float]:
    await asyncio.sleep(2)
    before = pss_bytes(platform_pids(local))
    for start in range(0, n, 1000):
        await tasks.batch_trigger("long-wait", [{"payload": i} for i in range(start, min(n, start + 1000))])
    await until(conn, "SELECT count(*) FROM runs WHERE task_identifier = 'long-wait' AND status = 'WAITING'", n, 900)
    await asyncio.sleep(2)
    after = pss_bytes(platform_pids(local))
    return {"waiting_mb": (after - before) / 2**20}


async def measure(local: LocalPlatform, key: str, args: argparse.Namespace) -> dict[str, float]:
    slipstream.configure(api_url=local.api_url, secret_key=key, realtime_url=local.realtime_url)
    conn = await asyncpg.connect(local.database_url)
    try:
        await tasks.batch_trigger("batch-child", [{"payload": i} for i in range(50)])  # warm up
        results = await accept(args.calls, args.size)
        results |= await resume(conn, args.resumes)
        results |= await fan_out(conn, args.parents, args.children)
        results |= await waiting_memory(local, conn, args.waiting)
        return results
    finally:
        await conn.close()


def write(path: Path, r: dict[str, float], args: argparse.Namespace) -> None:
    table = "\n".join(["| measure | result |", "|---|---|", *(f"| {name} | {value} |" for name, value in [
        (f"a batch of {args.size:,} accepted (`await tasks.batch_trigger(...)`, {args.calls} calls), p50",
         f"**{r['accept_p50']:.1f} ms**"),
        ("the same, p99 / fastest", f"{r['accept_p99']:.1f} ms / {r['accept_min']:.1f} ms"),
        (f"fan-out: {args.parents} parents x `batch_trigger_and_wait` of {args.children:,} children",
         f"**{r['fanout_rps']:,.0f} children completed/s**"),
        (f"child done -> parent running again (`trigger_and_wait`, {args.resumes} one after the other), p50",
         f"**{r['resume_p50']:.1f} ms** (p99 {r['resume_p99']:.1f} ms)"),
        (f"last child of a batch of {args.children:,} done -> parent running again, p50",
         f"{r['fanout_resume_p50']:.1f} ms"),
        (f"{args.waiting:,} runs WAITING at once: memory of the whole platform",
         f"**+{r['waiting_mb']:.0f} MB** (PSS)"),
    ])])
    section = f"""## Batch benchmarks

`make bench` (`python bench/batches.py --out docs/benchmarks.md`, this section only): one fresh
local platform (default durability, one supervisor with 16 worker processes), everything
measured through the SDK as users call it.

- Machine: {machine()}
- Commit: {commit()}

{table}

A batch is accepted in one transaction: one INSERT for its items, one row for the batch. A
parent that waits holds no slot and no process (a waited batch of more than 1,000 items is
streamed into one batch first); the supervisor that records a child's end resumes its parent
in the next statement (the scheduler's tick is the safety net). The machine's phase moves
these figures by up to a third: the interleaved before/after of the batch of 1,000 is in
"What each change bought".
"""
    write_section(path, "batches", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--parents", type=int, default=10)
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--resumes", type=int, default=50)
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = on_platform("PRODUCTION", 16, tasks="bench.batch_tasks",
                          measure=lambda local, key: measure(local, key, args))
    print(results)
    if args.out:
        write(args.out, results, args)


if __name__ == "__main__":
    main()
