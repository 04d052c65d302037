"""Queue-manager benchmarks: `make bench` (writes their section of docs/benchmarks.md).

Every case starts its own platform whose environment holds only the case's queues (see
bench/queue_tasks.py). Its no-op runs are triggered through the SDK while their queues are
paused; then the queues are resumed in one statement, and the case is timed from that
statement to the runs' timestamps, all on Postgres's clock:

1. Dispatch throughput: N runs on 1 queue (limit L), on Q queues with limit 1 each, and on K
   concurrency keys of one queue with limit 1 per key; runs/s from the resume to the last
   dequeue, and to the last completion.
2. Slot refill: R runs on one queue with limit 1; the time from an attempt's completion to
   the start of the attempt that took its slot.
3. Fairness: one tenant (concurrency key) with B queued runs, then T tenants with S runs
   each, on one keyed queue whose per-key limit exceeds the worker's slots; when each small
   tenant's last run started, as a fraction of the drain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import slipstream  # noqa: E402
from slipstream import queues, tasks  # noqa: E402
from slipstream_platform.local import LocalPlatform  # noqa: E402
from slipstream_platform.store.environments import key_hash  # noqa: E402

from bench.common import machine, on_platform, pct, write_section  # noqa: E402
from bench.timers import wait_for  # noqa: E402

TASK = "queue-noop"  # bench/queue_tasks.py
QUEUES_VAR = "SLIPSTREAM_BENCH_QUEUES"
Options = dict[str, str]


@dataclass(frozen=True)
class Case:
    """Runs to trigger (their trigger options, oldest first) on `queues` queues of limit `limit`."""

    queues: int
    limit: int
    batches: list[list[Options]]  # triggered one batch after the other, so each is older than the next

    @property
    def runs(self) -> int:
        return sum(len(batch) for batch in self.batches)


def queue_name(i: int) -> str:
    return f"bench-q-{i}"


def spread(n: int, groups: int, option: Callable[[int], Options]) -> list[Options]:
    """n runs in `groups` consecutive blocks: run i belongs to group i * groups // n."""
    return [option(i * groups // n) for i in range(n)]


# --- running one case on its own platform ---------------------------------------------------


async def trigger_all(task_id: str, batch: list[Options], clients: int) -> None:
    pending = iter(enumerate(batch))

    async def caller() -> None:
        for i, options in pending:
            await tasks.trigger(task_id, {"i": i}, **options)

    await asyncio.gather(*(caller() for _ in range(clients)))


async def each(names: list[str], action: Callable[[str], Any], clients: int) -> None:
    pending = iter(names)

    async def caller() -> None:
        for name in pending:
            await action(name)

    await asyncio.gather(*(caller() for _ in range(clients)))


async def resume_all(conn: asyncpg.Connection, env_id: str, names: list[str]) -> datetime:
    """Resume every queue in one statement and return its time; one API resume wakes the supervisors."""
    row = await conn.fetchrow(
        "WITH resumed AS (UPDATE queues SET paused = false, updated_at = now()"
        "   WHERE environment_id = $1 AND name = ANY($2::text[]) RETURNING 1)"
        " SELECT now() AS at, (SELECT count(*) FROM resumed) AS n",
        env_id, names,
    )
    assert row["n"] == len(names), f"resumed {row['n']} of {len(names)} queues"
    await queues.resume(names[0])
    resumed: datetime = row["at"]
    return resumed


async def run_case(local: LocalPlatform, key: str, case: Case, args: argparse.Namespace,
                   measure: Callable[..., Any]) -> Any:
    """Pause the case's queues, trigger its runs, resume, wait for every run; then `measure(conn, resumed)`."""
    clients = args.clients
    slipstream.configure(api_url=local.api_url, secret_key=key, realtime_url=local.realtime_url)
    conn = await asyncpg.connect(local.database_url)
    try:
        env_id = await conn.fetchval("SELECT environment_id FROM api_keys WHERE key_hash = $1", key_hash(key))
        # Warm up the worker processes and connections (on the warm-up task's own queue).
        await trigger_all("queue-warmup", [{}] * 20, 4)
        await wait_for(conn, "SELECT count(*) FROM runs WHERE status = 'COMPLETED'", 20, 120)
        names = [queue_name(i) for i in range(case.queues)]
        await each(names, queues.pause, clients)
        started = time.monotonic()
        for batch in case.batches:
            await trigger_all(TASK, batch, clients)
        print(f"  triggered {case.runs:,} runs in {time.monotonic() - started:.1f}s", flush=True)
        resumed = await resume_all(conn, env_id, names)
        done = f"SELECT count(*) FROM runs WHERE task_identifier = '{TASK}' AND status = 'COMPLETED'"
        took = await wait_for(conn, done, case.runs, 3600)
        print(f"  all completed {took:.1f}s after the resume", flush=True)
        return await measure(conn, resumed)
    finally:
        await conn.close()


def on_case_platform(case: Case, args: argparse.Namespace, measure: Callable[..., Any]) -> Any:
    os.environ[QUEUES_VAR] = f"{case.queues}:{case.limit}"  # read by bench/queue_tasks.py in the workers
    return on_platform("DEVELOPMENT", args.concurrency,
                       lambda local, key: run_case(local, key, case, args, measure), tasks="bench.queue_tasks")


# --- what each benchmark reads from Postgres -----------------------------------------------

# Each run's first (and only) attempt; $1 is the task.
_ATTEMPTS = "FROM runs r JOIN attempts a ON a.run_id = r.id AND a.number = 1 WHERE r.task_identifier = $1"


async def most_at_once(conn: asyncpg.Connection, partition: str) -> int:
    """The most attempts executing at once (started, not completed) within each `partition`."""
    over = f"PARTITION BY {partition} " if partition else ""
    value: int = await conn.fetchval(
        "WITH ev AS (SELECT r.queue, r.concurrency_key, a.started_at AS t, 1 AS d " + _ATTEMPTS +
        "   UNION ALL SELECT r.queue, r.concurrency_key, a.completed_at, -1 " + _ATTEMPTS + ")"
        f" SELECT max(n) FROM (SELECT sum(d) OVER ({over}ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS n FROM ev) x",
        TASK,
    )
    return value


async def dispatch_stats(conn: asyncpg.Connection, resumed: datetime) -> dict[str, float]:
    row = await conn.fetchrow(
        "SELECT count(*) AS runs, count(*) FILTER (WHERE r.status = 'COMPLETED') AS completed,"
        " extract(epoch FROM max(r.dequeued_at) - $2)::float8 AS dequeued " + _ATTEMPTS,
        TASK, resumed,
    )
    # Completions in order, in seconds since the resume.
    done = [r["t"] for r in await conn.fetch(
        f"SELECT extract(epoch FROM a.completed_at - $2)::float8 AS t {_ATTEMPTS} ORDER BY 1", TASK, resumed)]
    tenth = len(done) // 10
    return {"runs": row["runs"], "completed": row["completed"], "dequeued_s": row["dequeued"],
            "finished_s": done[-1], "dispatch_rps": row["runs"] / row["dequeued"], "rps": len(done) / done[-1],
            "first_tenth_rps": tenth / done[tenth - 1], "last_tenth_rps": tenth / (done[-1] - done[-tenth - 1]),
            "most_per_copy": await most_at_once(conn, "queue, concurrency_key"),
            "most_overall": await most_at_once(conn, "")}


async def refill_stats(conn: asyncpg.Connection, resumed: datetime, limit: int) -> dict[str, float]:
    """With the queue full all along, the j-th start took the slot of the (j - limit)-th completion."""
    starts = [r["t"] for r in await conn.fetch(f"SELECT a.started_at AS t {_ATTEMPTS} ORDER BY 1", TASK)]
    ends = [r["t"] for r in await conn.fetch(f"SELECT a.completed_at AS t {_ATTEMPTS} ORDER BY 1", TASK)]
    gaps = sorted((start - end).total_seconds() * 1000 for start, end in zip(starts[limit:], ends, strict=False))
    return {"runs": len(starts), "gaps": len(gaps), "p50": pct(gaps, 50), "p95": pct(gaps, 95),
            "p99": pct(gaps, 99), "max": gaps[-1], "mean": statistics.fmean(gaps),
            "negative": sum(1 for g in gaps if g < 0), "most_overall": await most_at_once(conn, "")}


async def fairness_stats(conn: asyncpg.Connection, resumed: datetime, big_key: str) -> dict[str, float]:
    """For each small tenant, its last start: position among all starts and time, as fractions of the drain."""
    rows = await conn.fetch(
        "WITH s AS (SELECT r.concurrency_key AS k, a.started_at, a.completed_at,"
        "   row_number() OVER (ORDER BY a.started_at, r.id) AS position " + _ATTEMPTS + "),"
        " drain AS (SELECT count(*) AS n, max(completed_at) - $2 AS took FROM s)"
        " SELECT k, max(position)::float8 / drain.n AS by_position,"
        "   extract(epoch FROM max(started_at) - $2) / extract(epoch FROM drain.took) AS by_time"
        " FROM s, drain WHERE k <> $3 GROUP BY k, drain.n, drain.took",
        TASK, resumed, big_key,
    )
    by_position = sorted(float(r["by_position"]) for r in rows)
    by_time = sorted(float(r["by_time"]) for r in rows)
    return {"tenants": len(rows), "worst_position": by_position[-1], "median_position": statistics.median(by_position),
            "worst_time": by_time[-1], "median_time": statistics.median(by_time),
            "most_overall": await most_at_once(conn, "")}


# --- the benchmarks -------------------------------------------------------------------------


def dispatch(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    n = args.runs
    cases = {
        "one": Case(1, args.one_limit, [[{"queue": queue_name(0)}] * n]),
        "queues": Case(args.queues, 1, [spread(n, args.queues, lambda q: {"queue": queue_name(q)})]),
        "keys": Case(1, 1, [spread(n, args.keys, lambda k: {"queue": queue_name(0), "concurrency_key": f"k-{k}"})]),
    }
    results = {}
    for name, case in cases.items():
        print(f"dispatch, {name}: {n:,} runs on {case.queues:,} queue(s) of limit {case.limit}", flush=True)
        results[name] = on_case_platform(case, args, dispatch_stats)
    return results


def refill(args: argparse.Namespace) -> dict[str, float]:
    case = Case(1, args.refill_limit, [[{"queue": queue_name(0)}] * args.refill_runs])
    print(f"refill: {args.refill_runs:,} runs on one queue of limit {args.refill_limit}", flush=True)
    return on_case_platform(case, args, lambda conn, resumed: refill_stats(conn, resumed, args.refill_limit))


def fairness(args: argparse.Namespace) -> dict[str, float]:
    big = [{"queue": queue_name(0), "concurrency_key": "big"}] * args.big_runs
    small = spread(args.tenants * args.tenant_runs, args.tenants,
                   lambda t: {"queue": queue_name(0), "concurrency_key": f"small-{t}"})
    case = Case(1, args.fair_limit, [big, small])
    print(f"fairness: {args.big_runs:,} runs of one tenant, then {args.tenants} x {args.tenant_runs}", flush=True)
    return on_case_platform(case, args, lambda conn, resumed: fairness_stats(conn, resumed, "big"))


# --- the report -----------------------------------------------------------------------------


def commit() -> str:
    """The checked-out commit, `-dirty` when the working tree has changes."""
    git = ["git", "describe", "--always", "--dirty"]
    return subprocess.run(git, cwd=ROOT, capture_output=True, text=True).stdout.strip() or "unknown"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def write(path: Path, results: dict[str, Any], args: argparse.Namespace) -> None:
    d, r, f = results["dispatch"], results["refill"], results["fairness"]
    ratio = d["keys"]["rps"] / d["one"]["rps"]
    labels = {
        "one": f"1 queue, `concurrency_limit={args.one_limit}`",
        "queues": f"{args.queues:,} queues, `concurrency_limit=1` each",
        "keys": f"{args.keys:,} keys on 1 queue, `concurrency_limit=1` per key",
    }
    rows = "\n".join(
        f"| {labels[name]} | {int(s['most_per_copy'])} / {int(s['most_overall'])} | {s['dequeued_s']:.1f} s"
        f" | {s['dispatch_rps']:.0f} | {s['finished_s']:.1f} s | {s['rps']:.0f}"
        f" | {s['first_tenth_rps']:.0f} / {s['last_tenth_rps']:.0f} |"
        for name, s in d.items()
    )
    small = args.tenants * args.tenant_runs
    fifo = args.big_runs / (args.big_runs + small)  # where plain ready order would start them
    fair_ok = max(f["worst_position"], f["worst_time"]) <= 0.10
    statistics_note = ("No ANALYZE follows: the first claims run on plans made before the burst, until"
                       " autovacuum analyzes `runs` (a plan that scanned the backlog would show in the"
                       " first-tenth column).")
    method = textwrap.fill(
        "Each case starts its own platform, whose environment declares only that case's queues"
        f" (bench/queue_tasks.py). The case's runs are triggered through the SDK ({args.clients} concurrent callers)"
        f" while its queues are paused. {statistics_note} Then all its queues are resumed in one statement (the API"
        " resumes one queue per request), and one resume request wakes the supervisors. Every time below is on"
        " Postgres's clock, from that statement.", 95)
    section = f"""## Queue benchmarks

`make bench` (`python bench/queues.py --out docs/benchmarks.md`, this section only), everything on
one machine: embedded NATS and Postgres with default durability, the five services as
processes, one supervisor with {args.concurrency} worker processes, no-op tasks, the environment's
default limits (100, burst factor 2).

- Machine: {machine()}
- Commit: {commit()}, {time.strftime('%Y-%m-%d')}

{method}

### Dispatch throughput: {args.runs:,} no-op runs

Each queue's (or key's) runs are triggered one after the other, so most of the oldest
waiting runs are held back by their limit. "Most at once" counts executing attempts (started,
not yet completed) in one queue or key, and in all (the worker has {args.concurrency} slots): it shows
the limits bind and hold.

| case | most at once (one / all) | to last dequeue | runs/s | to last completion | runs/s \
| runs/s, first / last tenth |
|---|---|---|---|---|---|---|
{rows}

{args.keys:,} keys against 1 queue: {ratio:.2f} x the throughput. Target: within 2x (at least
0.5 x): {verdict(ratio >= 0.5)}.

### Refilling a freed slot

{int(r['runs']):,} no-op runs queued on one queue with `concurrency_limit={args.refill_limit}`, which stays full
until it drains. For every run that took a freed slot: the time from the completion of the
attempt that freed it (`attempts.completed_at`, in completion order) to the start of its own
attempt (`attempts.started_at`). That covers the completion's commit and the take (claim and
start in one statement) that follows it.

| p50 | p95 | p99 | max | mean |
|---|---|---|---|---|
| {r['p50']:.1f} ms | {r['p95']:.1f} ms | {r['p99']:.1f} ms | {r['max']:.1f} ms | {r['mean']:.1f} ms |

Target: p50 under 5 ms: {verdict(r['p50'] < 5)}.

### Fairness across concurrency keys

One keyed queue with `concurrency_limit={args.fair_limit}` per key, more than the worker's {args.concurrency} slots,
so one tenant alone could fill the worker. Tenant `big` queues {args.big_runs:,} runs first; then
{args.tenants} tenants queue {args.tenant_runs} each ({small:,} runs, all newer). In plain ready order the
small tenants would start last, after {fifo:.0%} of the drain; round-robin across keys
starts them first. For each small tenant, when its last run started: its position among all
{args.big_runs + small:,} starts, and its time since the resume, each as a fraction of the drain (all
starts; the time to the last completion).

| small tenants | worst by position | median by position | worst by time | median by time |
|---|---|---|---|---|
| {int(f['tenants'])} | {f['worst_position']:.1%} | {f['median_position']:.1%} | {f['worst_time']:.1%} \
| {f['median_time']:.1%} |

Target: every small tenant's runs started within the first 10% of the drain, by position and
by time: {verdict(fair_ok)}.
"""
    write_section(path, "queues", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20_000, help="runs per dispatch case")
    parser.add_argument("--one-limit", type=int, default=16, help="limit of the single queue")
    parser.add_argument("--queues", type=int, default=1_000, help="queues of the many-queues case")
    parser.add_argument("--keys", type=int, default=10_000, help="concurrency keys of the keyed case")
    parser.add_argument("--refill-runs", type=int, default=1_000)
    parser.add_argument("--refill-limit", type=int, default=1)
    parser.add_argument("--big-runs", type=int, default=10_000, help="queued runs of the big tenant")
    parser.add_argument("--tenants", type=int, default=50, help="small tenants")
    parser.add_argument("--tenant-runs", type=int, default=10, help="queued runs of each small tenant")
    parser.add_argument("--fair-limit", type=int, default=100, help="per-key limit of the fairness queue")
    parser.add_argument("--clients", type=int, default=32, help="concurrent SDK callers that trigger")
    parser.add_argument("--concurrency", type=int, default=16, help="worker processes")
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the sizes (2,000 runs, 100 queues, 1,000 keys, 200 refills, 1,000 + 50 x 1)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.queues, args.keys, args.refill_runs = 2_000, 100, 1_000, 200
        args.big_runs, args.tenant_runs = 1_000, 1
    results = {"dispatch": dispatch(args), "refill": refill(args), "fairness": fairness(args)}
    print(results)
    if args.out:
        write(args.out, results, args)


if __name__ == "__main__":
    main()
