"""Large-payload benchmark: `make bench` (writes its section of docs/benchmarks.md).

For each payload size (1 KB inline, then 1 MB and 9 MB, which go to the JetStream Object
Store), N runs one at a time through the SDK as users call it (`tasks.trigger`):

- the trigger call's duration;
- trigger -> task function entry (the task's `time.time()` minus the producer's, one clock);
- trigger -> COMPLETED (the run's `finished_at` in Postgres, same clock), with the output
  small, and again with the payload echoed back as the output (stored as well when large);
- reading the echoed output back: `runs.retrieve` plus a GET of `outputPresignedUrl`.

Memory: trigger-api's PSS while 20 triggers of 9 MB are in flight at once (sampled every
10 ms), against its PSS at rest.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import slipstream  # noqa: E402
from slipstream import runs, tasks  # noqa: E402
from slipstream_platform.local import LocalPlatform  # noqa: E402

from bench.common import commit, machine, on_platform, pct, pss_bytes, write_section  # noqa: E402

SIZES = {"1 KB": 1024, "1 MB": 1024 * 1024, "9 MB": 9 * 1024 * 1024}


async def one(conn: asyncpg.Connection, blob: str, echo: bool) -> dict[str, float]:
    before = time.time()
    handle = await tasks.trigger("payload-stamp", {"blob": blob, "echo": echo})
    called = time.time()
    deadline = time.monotonic() + 120
    while True:
        row = await conn.fetchrow("SELECT status, extract(epoch FROM finished_at) AS done FROM runs WHERE id = $1",
                                  handle.id)
        if row["status"] == "COMPLETED":
            break
        if row["status"] in ("FAILED", "CRASHED", "SYSTEM_FAILURE") or time.monotonic() > deadline:
            raise RuntimeError(f"run {handle.id} ended {row['status']}")
        await asyncio.sleep(0.002)
    result: dict[str, float] = {"call_ms": (called - before) * 1000, "done_ms": (float(row["done"]) - before) * 1000}
    read_start = time.time()
    run = await runs.retrieve(handle.id)
    output = run.output
    if run.output_presigned_url:
        async with aiohttp.ClientSession() as http, http.get(run.output_presigned_url) as r:
            output = await r.json()
    result["read_ms"] = (time.time() - read_start) * 1000
    result["entry_ms"] = (output["entered"] - before) * 1000
    return result


async def in_flight(local: LocalPlatform, key: str, blob: str, n: int) -> dict[str, float]:
    """trigger-api's PSS at rest and its peak while `n` triggers of `blob` are in flight."""
    pid = local.processes["trigger_api"].pid
    rest = pss_bytes([pid])
    peak = rest
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, pss_bytes([pid]))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    started = time.time()
    await asyncio.gather(*(tasks.trigger("payload-stamp", {"blob": blob}) for _ in range(n)))
    elapsed = time.time() - started
    stop.set()
    await sampler
    return {"rest_mb": rest / 2**20, "peak_mb": peak / 2**20, "seconds": elapsed}


async def measure(local: LocalPlatform, key: str, n: int) -> dict[str, Any]:
    slipstream.configure(api_url=local.api_url, secret_key=key, realtime_url=local.realtime_url)
    conn = await asyncpg.connect(local.database_url)
    results: dict[str, Any] = {"n": n, "rows": {}}
    try:
        for label, size in SIZES.items():
            blob = "x" * (size - 40)  # the payload's JSON is about `size` bytes
            await one(conn, blob, False)  # warm
            small = [await one(conn, blob, False) for _ in range(n)]
            echoed = [await one(conn, blob, True) for _ in range(n)]
            results["rows"][label] = {
                "call_p50": statistics.median(r["call_ms"] for r in small),
                "entry_p50": statistics.median(r["entry_ms"] for r in small),
                "entry_p99": pct(sorted(r["entry_ms"] for r in small), 99),
                "done_p50": statistics.median(r["done_ms"] for r in small),
                "echo_done_p50": statistics.median(r["done_ms"] for r in echoed),
                "read_p50": statistics.median(r["read_ms"] for r in echoed),
            }
            print(label, results["rows"][label])
        results["memory"] = await in_flight(local, key, "x" * (9 * 1024 * 1024 - 40), 20)
    finally:
        await conn.close()
    return results


def write(path: Path, r: dict[str, Any]) -> None:
    rows = "\n".join(
        f"| {label} | {v['call_p50']:.1f} ms | {v['entry_p50']:.1f} / {v['entry_p99']:.1f} ms | {v['done_p50']:.1f} ms"
        f" | {v['echo_done_p50']:.1f} ms | {v['read_p50']:.1f} ms |" for label, v in r["rows"].items())
    m = r["memory"]
    section = f"""
## Large payloads

`make bench` (`python bench/payloads.py --out docs/benchmarks.md`, this section only): {r['n']} runs of each
size, one at a time, through the SDK (`tasks.trigger`); a no-op task that stamps its entry.
Payloads and outputs over 512 KB go to the JetStream Object Store of the platform's NATS
(ADR 0012). "Echoed" runs return the payload as their output (stored the same way); "read"
is `runs.retrieve` plus the GET of `outputPresignedUrl`. Medians unless marked.

- {machine()}
- Commit: {commit()}

| payload | trigger call | trigger -> function entry p50 / p99 | trigger -> COMPLETED \
| echoed: trigger -> COMPLETED | echoed: read the output |
|---|---|---|---|---|---|
{rows}

trigger-api while 20 triggers of 9 MB are in flight at once: PSS {m['rest_mb']:.0f} MB at rest,
{m['peak_mb']:.0f} MB at the peak ({(m['peak_mb'] - m['rest_mb']) / 20:.1f} MB per trigger in flight); the 20 took
{m['seconds']:.1f} s in all.
"""
    write_section(path, "payloads", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = on_platform("DEVELOPMENT", 4, lambda local, key: measure(local, key, args.runs),
                          tasks="bench.payload_tasks")
    if args.out:
        write(args.out, results)


if __name__ == "__main__":
    main()
