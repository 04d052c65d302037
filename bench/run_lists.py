"""Listing benchmark: `make bench` (writes its section of docs/benchmarks.md).

Builds N runs (10 million by default) in one environment of an embedded Postgres, in bulk:
the runs' indexes are dropped, the rows inserted with one INSERT ... SELECT per million, and
the same indexes created again (their definitions are read from pg_indexes first), then
ANALYZE. The mix: 20 tasks (one takes a third of the runs), 30 days of creation times, 90%
COMPLETED, 5% FAILED, 2% CANCELED, 1% QUEUED, 0.5% CRASHED and the rest EXECUTING,
WAITING or DELAYED; 30% of the runs carry one of 1,000 tags, 10% belong to batches of 100,
5% to one of 100 schedules.

Then every filter combination of `GET /api/v1/runs` is timed as the API runs it
(`store.run_lists.page`, on one connection): the first page and four pages after it, 25 runs
a page, each page timed on its own; median and worst, with the plan of the first page
(EXPLAIN ANALYZE: which index, and how many rows it read).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slipstream_platform.local import LocalPlatform  # noqa: E402
from slipstream_platform.store import run_lists  # noqa: E402
from slipstream_platform.store.environments import key_hash  # noqa: E402
from slipstream_platform.store.run_lists import RunFilter  # noqa: E402

from bench.common import commit, machine, write_section  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 30
CHUNK = 1_000_000

# (label, filter): the combinations a dashboard or a script asks for.
CASES: list[tuple[str, RunFilter]] = [
    ("no filter", RunFilter()),
    ("status FAILED (5%)", RunFilter(statuses=["FAILED"])),
    ("status CRASHED (0.5%)", RunFilter(statuses=["CRASHED"])),
    ("status QUEUED or EXECUTING (1.2%)", RunFilter(statuses=["QUEUED", "EXECUTING"])),
    ("one task (33%)", RunFilter(task_identifiers=["task-00"])),
    ("one task (3%)", RunFilter(task_identifiers=["task-07"])),
    ("three tasks", RunFilter(task_identifiers=["task-03", "task-11", "task-19"])),
    ("one task, status FAILED", RunFilter(task_identifiers=["task-07"], statuses=["FAILED"])),
    ("one tag (0.03%)", RunFilter(tags=["tag-0042"])),
    ("a tag no run has", RunFilter(tags=["tag-none"])),
    ("one batch", RunFilter(batch_id="batch_bench_0000777")),
    ("one schedule", RunFilter(schedule_id="sched_bench_042")),
    ("created in the last hour", RunFilter(created_from=NOW - timedelta(hours=1))),
    ("created 10 to 11 days ago", RunFilter(created_from=NOW - timedelta(days=11),
                                            created_to=NOW - timedelta(days=10))),
    ("queue of one task (3%)", RunFilter(queues=["task/task-07"])),
]


async def build(conn: asyncpg.Connection, env_id: str, n: int) -> dict[str, float]:
    """Insert `n` runs with the indexes dropped, then create them again; seconds of each step."""
    indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'runs'"
                               " AND indexname <> 'runs_pkey'")
    started = time.monotonic()
    for row in indexes:
        await conn.execute(f'DROP INDEX "{row["indexname"]}"')
    await conn.execute("ALTER TABLE runs SET (autovacuum_enabled = false)")
    for first in range(0, n, CHUNK):
        count = min(CHUNK, n - first)
        await conn.execute(
            "INSERT INTO runs (id, environment_id, task_identifier, status, payload, queue, tags, batch_id,"
            " schedule_id, created_at, updated_at, attempt_count, version)"
            " SELECT 'run_bench_' || lpad(i::text, 9, '0'), $1, t.task, s.status, '{}'::jsonb, 'task/' || t.task,"
            "  CASE WHEN i % 10 < 3 THEN ARRAY['tag-' || lpad((i / 10 % 1000)::text, 4, '0')] ELSE '{}' END,"
            "  CASE WHEN i % 100 < 10 THEN 'batch_bench_' || lpad((i / 1000)::text, 7, '0') END,"
            "  CASE WHEN i % 100 >= 95 THEN 'sched_bench_' || lpad((i / 100 % 100)::text, 3, '0') END,"
            "  c.at, c.at, 1, 'v1'"
            " FROM generate_series($2::bigint, $3::bigint) AS i"
            " CROSS JOIN LATERAL (SELECT $4::timestamptz - make_interval(secs => ($5::bigint - i) * $6::float8)"
            "   AS at) c"
            " CROSS JOIN LATERAL (SELECT CASE WHEN i % 3 = 0 THEN 'task-00'"
            "   ELSE 'task-' || lpad((1 + i % 19)::text, 2, '0') END AS task) t"
            " CROSS JOIN LATERAL (SELECT CASE WHEN i % 1000 < 900 THEN 'COMPLETED' WHEN i % 1000 < 950 THEN 'FAILED'"
            "   WHEN i % 1000 < 970 THEN 'CANCELED' WHEN i % 1000 < 980 THEN 'QUEUED'"
            "   WHEN i % 1000 < 985 THEN 'CRASHED' WHEN i % 1000 < 987 THEN 'EXECUTING'"
            "   WHEN i % 1000 < 995 THEN 'WAITING' ELSE 'DELAYED' END AS status) s",
            env_id, first + 1, first + count, NOW, n, DAYS * 86400 / n,
        )
        print(f"  {first + count:,} runs inserted ({time.monotonic() - started:.0f}s)", flush=True)
    inserted = time.monotonic() - started
    for row in indexes:
        await conn.execute(row["indexdef"])
    indexed = time.monotonic() - started - inserted
    await conn.execute("ALTER TABLE runs RESET (autovacuum_enabled)")
    await conn.execute("VACUUM ANALYZE runs")
    return {"insert_s": inserted, "index_s": indexed, "total_s": time.monotonic() - started}


def _plan_summary(lines: list[str]) -> tuple[str, int]:
    """The indexes a plan reads (in order of appearance) and the rows its scans passed over."""
    used: list[str] = []
    for line in lines:
        for name in re.findall(r"(?:Index Scan|Index Only Scan)(?: Backward)? using (\w+)|Bitmap Index Scan on (\w+)",
                               line):
            name = name[0] or name[1]
            if name not in used:
                used.append(name)
        if "Seq Scan on runs" in line and "seq scan" not in used:
            used.append("seq scan")
    read = 0
    for line in lines:
        if re.search(r"(Index|Seq) Scan", line):
            rows = re.search(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+) loops=(\d+)", line)
            removed = 0
            if rows:
                read += int(rows.group(1)) * int(rows.group(2))
        if "Rows Removed by Filter" in line:
            removed = int(line.rsplit(":", 1)[1])
            read += removed
    return ", ".join(used) or "none", read


async def explain(conn: asyncpg.Connection, env_id: str, where: RunFilter) -> tuple[str, int]:
    """The plan of the first page: run_lists.page's statement under EXPLAIN ANALYZE."""
    sql, args = run_lists.statement(env_id, where, size=25)
    rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
    return _plan_summary([r[0] for r in rows])


async def measure(conn: asyncpg.Connection, env_id: str, pages: int) -> list[dict[str, Any]]:
    results = []
    for label, where in CASES:
        timings: list[float] = []
        found = 0
        for _ in range(2):  # the second pass is the one reported: the first warms the cache
            timings = []
            after = None
            for _ in range(pages):
                started = time.perf_counter()
                page = await run_lists.page(conn, env_id, where, size=25, after=after)
                timings.append((time.perf_counter() - started) * 1000)
                found = len(page.rows)
                if page.next is None:
                    break
                after = page.next
        indexes, read = await explain(conn, env_id, where)
        results.append({"case": label, "p50_ms": statistics.median(timings), "max_ms": max(timings),
                        "pages": len(timings), "rows_last_page": found, "indexes": indexes, "rows_read": read})
        print(f"  {label}: median {results[-1]['p50_ms']:.2f} ms, worst {results[-1]['max_ms']:.2f} ms"
              f" ({indexes}; first page read {read} rows)", flush=True)
    return results


async def run(local: LocalPlatform, key: str, n: int, pages: int) -> dict[str, Any]:
    conn = await asyncpg.connect(local.database_url)
    try:
        env_id = await conn.fetchval("SELECT environment_id FROM api_keys WHERE key_hash = $1", key_hash(key))
        built = await build(conn, env_id, n)
        print(f"built {n:,} runs in {built['total_s']:.0f}s", flush=True)
        size = await conn.fetchval("SELECT pg_total_relation_size('runs')")
        return {"built": built, "bytes": size, "cases": await measure(conn, env_id, pages)}
    finally:
        await conn.close()


def write(path: Path, n: int, results: dict[str, Any]) -> None:
    rows = "\n".join(
        f"| {c['case']} | {c['indexes']} | {c['rows_read']:,} | {c['p50_ms']:.2f} ms | {c['max_ms']:.2f} ms |"
        for c in results["cases"])
    worst = max(c["max_ms"] for c in results["cases"])
    over = [c["case"] for c in results["cases"] if c["max_ms"] >= 20]
    verdict = "met" if not over else f"**missed** for {', '.join(over)}"
    built = results["built"]
    section = f"""
## Listing runs

`make bench` (`python bench/run_lists.py --out docs/benchmarks.md`, this section only):
{n:,} runs in one environment of an embedded Postgres 15 (default settings), built in bulk
({built['insert_s']:.0f} s to insert with the indexes dropped, {built['index_s']:.0f} s to create
the same indexes again; {results['bytes'] / 2**30:.1f} GiB with its indexes), then VACUUM ANALYZE.
The mix (bench/run_lists.py): 20 tasks, one with a third of the runs; 30 days; 90% COMPLETED,
5% FAILED, 0.5% CRASHED, 1% QUEUED; 30% tagged with one of 1,000 tags; 10% in batches of
100; 5% from 100 schedules. Each case is timed as the API runs it (`store.run_lists.page` on
one connection, 25 runs a page): the first page and the pages after it, each on its own, after
one warm-up pass. "Rows read" is what the first page's scans passed over (EXPLAIN ANALYZE).

- {machine()}
- Commit: {commit()}, {datetime.now(UTC):%Y-%m-%d}

| filter | index the page reads | rows read (first page) | median page | worst page |
|---|---|---|---|---|
{rows}

Target: a page under 20 ms with 10 million runs: {verdict} (worst page {worst:.1f} ms).
"""
    write_section(path, "run-lists", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--pages", type=int, default=5, help="pages per case (the first and the ones after it)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="slipstream-bench-lists-"))
    folder.chmod(0o755)
    local = LocalPlatform(folder)
    try:
        local.start_servers()
        key = local.bootstrap("bench")["PRODUCTION"]
        results = asyncio.run(run(local, key, args.runs, args.pages))
    finally:
        local.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print(results)
    if args.out:
        write(args.out, args.runs, results)


if __name__ == "__main__":
    main()
