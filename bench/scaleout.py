"""Throughput with 1, 2 and 3 supervisor replicas (issue 14): `make bench` writes its section.

One local platform (default durability). For each number of supervisors, each with the same
number of worker processes: no supervisor runs while N no-op runs (bench/stamp_tasks.py, a tag
per round) are triggered through the SDK by 32 callers; then the supervisors start; drain
runs/s = N / (last completion - first function entry), median of the rounds. On a machine with
two cores the supervisors share the same two cores, so the figure shows what scaling out costs
(more processes contending, more takes racing), not a speed-up; on machines of their own each
supervisor adds its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import slipstream  # noqa: E402
from slipstream import tasks  # noqa: E402
from slipstream_platform.local import LocalPlatform  # noqa: E402

from bench.common import commit, machine, on_platform, write_section  # noqa: E402
from bench.fastpath import TASKS  # noqa: E402


async def drain_with(local: LocalPlatform, conn: asyncpg.Connection, key: str, supervisors: int, n: int,
                     processes: int, tag: str) -> float:
    pending = iter(range(n))

    async def caller() -> None:
        for i in pending:
            await tasks.trigger("stamp-drain", {"i": i}, tags=[tag])

    await asyncio.gather(*(caller() for _ in range(32)))
    names = [f"supervisor-{tag}-{i}" for i in range(supervisors)]
    for name in names:
        local.start_service("supervisor", {"SLIPSTREAM_TASKS": TASKS, "SLIPSTREAM_SECRET_KEY": key,
                                           "SLIPSTREAM_CONCURRENCY": str(processes)}, key=name)
    local.wait_healthy(names)
    deadline = time.monotonic() + 900
    while await conn.fetchval("SELECT count(*) FROM runs WHERE tags @> ARRAY[$1] AND status = 'COMPLETED'",
                              tag) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tag}: not all {n} runs completed")
        await asyncio.sleep(0.05)
    row = await conn.fetchrow(
        "SELECT min(output::text::float8) AS first, extract(epoch FROM max(finished_at))::float8 AS last"
        " FROM runs WHERE tags @> ARRAY[$1]", tag)
    for name in names:
        local.stop_service(name)
    return float(n / (row["last"] - row["first"]))


async def measure(local: LocalPlatform, key: str, args: argparse.Namespace) -> dict[int, list[float]]:
    slipstream.configure(api_url=local.api_url, secret_key=key)
    local.stop_service("supervisor")
    conn = await asyncpg.connect(local.database_url)
    results: dict[int, list[float]] = {k: [] for k in (1, 2, 3)}
    try:
        for round_ in range(args.rounds):
            for supervisors in (1, 2, 3) if round_ % 2 == 0 else (3, 2, 1):  # interleaved: drift hits all alike
                rate = await drain_with(local, conn, key, supervisors, args.runs, args.processes,
                                        f"scale-{supervisors}-{round_}")
                results[supervisors].append(rate)
                print(f"{supervisors} supervisor(s), round {round_ + 1}: {rate:,.0f} runs/s", flush=True)
    finally:
        await conn.close()
    return results


def write(path: Path, results: dict[int, list[float]], args: argparse.Namespace) -> None:
    one = statistics.median(results[1])
    rows = "\n".join(
        f"| {k} | {k * args.processes} | {statistics.median(v):,.0f} | {', '.join(f'{r:,.0f}' for r in v)}"
        f" | {statistics.median(v) / one:.2f} |" for k, v in results.items())
    section = f"""## Scaling out: 1, 2 and 3 supervisors

`make bench` (`python bench/scaleout.py --out docs/benchmarks.md`): one local platform (default
durability); {args.runs:,} no-op runs triggered by 32 SDK callers with no supervisor running, then
1, 2 or 3 supervisors of {args.processes} processes each start; drain runs/s = runs / (last
completion - first function entry), {args.rounds} rounds interleaved.

- Machine: {machine()}
- Commit: {commit()}

| supervisors | processes | drain runs/s (median) | rounds | vs one |
|---|---|---|---|---|
{rows}

This machine has two cores: every supervisor shares them with the others and with the rest of
the platform, so more supervisors cannot be faster here; the table shows what scaling out costs
(more processes contending, takes racing for the same rows), within the drift between rounds
(the machine's speed varies: compare the rounds, not one figure). Supervisors take runs from
Postgres themselves (ADR 0009); on machines of their own each adds its cores.
"""
    write_section(path, "scaleout", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict[int, list[float]] = on_platform(
        "PRODUCTION", 8, tasks=TASKS, measure=lambda local, key: measure(local, key, args))
    if args.out:
        write(args.out, results, args)


if __name__ == "__main__":
    main()
