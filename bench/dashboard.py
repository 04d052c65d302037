"""Dashboard benchmark: `make bench` (writes its section of docs/benchmarks.md).

1 million runs (bench/run_lists.py's mix, built the same way) in the DEVELOPMENT environment of
an embedded platform whose supervisor serves bench/noop_tasks.py; then each dashboard page is
fetched as a signed-in browser fetches it (an HTTP client with the session cookie, over
loopback): 20 times after 3 warm-ups, the time from request to the last byte of the HTML,
median and p95. Target (issue 13): every page under 200 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slipstream_platform.local import LocalPlatform  # noqa: E402
from slipstream_platform.store.environments import key_hash  # noqa: E402

from bench.common import commit, machine, on_platform, pct, write_section  # noqa: E402
from bench.run_lists import build  # noqa: E402

PAGES = [
    ("runs, no filter", "/dashboard/runs"),
    ("runs, status FAILED", "/dashboard/runs?status=FAILED"),
    ("runs, one task", "/dashboard/runs?task=task-07"),
    ("runs, one tag", "/dashboard/runs?tag=tag-0042"),
    ("runs, a later page", None),
    ("one run", "/dashboard/runs/run_bench_000500000"),
    ("test", "/dashboard/test?task=noop-http"),
    ("schedules", "/dashboard/schedules"),
    ("queues", "/dashboard/queues"),
    ("environments", "/dashboard/environments"),
]


async def measure(local: LocalPlatform, key: str, n: int) -> dict[str, Any]:
    conn = await asyncpg.connect(local.database_url)
    try:
        env_id = await conn.fetchval("SELECT environment_id FROM api_keys WHERE key_hash = $1", key_hash(key))
        built = await build(conn, env_id, n)
    finally:
        await conn.close()
    base = local.api_url
    results = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(base + "/dashboard/login", data={"key": key, "next": "/dashboard/runs"}) as r:
            assert r.status == 200, await r.text()
        async with browser.get(base + "/dashboard/runs") as r:
            page = await r.text()
        later = page.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
        for label, path in PAGES:
            url = base + (path or "/dashboard/runs" + later)
            timings = []
            for i in range(23):
                started = time.perf_counter()
                async with browser.get(url) as r:
                    body = await r.read()
                    assert r.status == 200, (url, r.status, body[:300])
                if i >= 3:
                    timings.append((time.perf_counter() - started) * 1000)
            results.append({"page": label, "p50_ms": statistics.median(timings), "p95_ms": pct(sorted(timings), 95),
                            "bytes": len(body)})
            print(f"  {label}: median {results[-1]['p50_ms']:.1f} ms, p95 {results[-1]['p95_ms']:.1f} ms", flush=True)
    return {"built": built, "pages": results}


def write(path: Path, n: int, results: dict[str, Any]) -> None:
    rows = "\n".join(f"| {p['page']} | {p['p50_ms']:.1f} ms | {p['p95_ms']:.1f} ms | {p['bytes'] / 1024:.1f} KB |"
                     for p in results["pages"])
    over = [p["page"] for p in results["pages"] if p["p95_ms"] >= 200]
    verdict = "met: every page's p95 is under 200 ms" if not over else f"**missed** for {', '.join(over)}"
    section = f"""
## Dashboard pages

`make bench` (`python bench/dashboard.py --out docs/benchmarks.md`, this section only):
{n:,} runs (bench/run_lists.py's mix) in the environment, then each page fetched as a signed-in
browser fetches it (HTTP with the session cookie, over loopback; trigger-api renders it from its
own public API): 20 fetches after 3 warm-ups, request to last byte of HTML. The live updates
(websockets) and static files are not in these times.

- {machine()}
- Commit: {commit()}, {datetime.now(UTC):%Y-%m-%d}

| page | median | p95 | HTML |
|---|---|---|---|
{rows}

Target (issue 13): every page under 200 ms with 1 million runs: {verdict}.
"""
    write_section(path, "dashboard", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = on_platform("DEVELOPMENT", 4, lambda local, key: measure(local, key, args.runs))
    if args.out:
        write(args.out, args.runs, results)


if __name__ == "__main__":
    main()
