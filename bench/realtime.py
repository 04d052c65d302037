"""Realtime benchmark: `make bench` (writes its section of docs/benchmarks.md).

One realtime process (the platform's, started with the rest of it) holds S websocket
subscribers (10,000 by default, on loopback: R runs, S / R subscribers each) while R runs
change C times a second in all. A change is what a writer of the platform does: an UPDATE of
the run (its metadata carries the writer's `time.time()` taken right before it) committed,
then its `run.updated` published on NATS. Latency is each subscriber's receive time minus
that stamp (one clock: one machine); p50/p99/max over every message received while the
changes run. Memory: the realtime process's PSS before the subscribers connect and with all
of them connected and idle, per subscriber.

The runs are DELAYED an hour ahead, so nothing else on the platform touches them.
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
import msgspec
import nats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slipstream_platform.local import LocalPlatform  # noqa: E402
from slipstream_platform.store.environments import key_hash  # noqa: E402
from slipstream_proto import RunUpdated, encode_event  # noqa: E402
from slipstream_proto.events import run_updated_subject  # noqa: E402

from bench.common import commit, machine, on_platform, pct, pss_bytes, write_section  # noqa: E402


class _Metadata(msgspec.Struct):
    t: float = 0.0


class _Run(msgspec.Struct):
    id: str
    metadata: _Metadata | None = None


class _Message(msgspec.Struct):
    run: _Run | None = None


_decoder = msgspec.json.Decoder(_Message)


async def subscribe(http: aiohttp.ClientSession, url: str, key: str, latencies: list[float], ready: asyncio.Event,
                    counter: list[int], total: int, measuring: list[bool]) -> None:
    ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {key}"}, heartbeat=None, max_msg_size=0)
    first = True
    async for frame in ws:
        now = time.time()
        if frame.type != aiohttp.WSMsgType.TEXT:
            break
        if first:
            first = False
            counter[0] += 1
            if counter[0] == total:
                ready.set()
            continue
        message = _decoder.decode(frame.data)
        if measuring[0] and message.run and message.run.metadata and message.run.metadata.t:
            latencies.append((now - message.run.metadata.t) * 1000)


async def measure(local: LocalPlatform, key: str, subscribers: int, runs: int, rate: int, seconds: float
                  ) -> dict[str, Any]:
    conn = await asyncpg.connect(local.database_url)
    nc = await nats.connect(local.nats.url)
    env_id = await conn.fetchval("SELECT environment_id FROM api_keys WHERE key_hash = $1", key_hash(key))
    ids = [r["id"] for r in await conn.fetch(
        "INSERT INTO runs (id, environment_id, task_identifier, status, payload, queue, delayed_until)"
        " SELECT 'run_bench_rt_' || lpad(i::text, 6, '0'), $1, 'noop', 'DELAYED', '{}'::jsonb, 'task/noop',"
        "  now() + interval '1 hour' FROM generate_series(1, $2) AS i RETURNING id", env_id, runs)]
    realtime_pid = local.processes["realtime"].pid
    idle_before = pss_bytes([realtime_pid])
    latencies: list[float] = []
    ready = asyncio.Event()
    counter = [0]
    measuring = [False]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = []
        started = time.monotonic()
        for i in range(subscribers):
            url = f"{local.realtime_url}/realtime/v1/runs/{ids[i % runs]}"
            tasks.append(asyncio.create_task(subscribe(http, url, key, latencies, ready, counter, subscribers,
                                                       measuring)))
            if i % 200 == 199:
                await asyncio.sleep(0.05)  # connect in waves, as clients would arrive
        await asyncio.wait_for(ready.wait(), 300)
        connect_s = time.monotonic() - started
        await asyncio.sleep(2)
        idle_after = pss_bytes([realtime_pid])
        update = await conn.prepare("UPDATE runs SET metadata = jsonb_build_object('t', $2::float8),"
                                    " updated_at = clock_timestamp() WHERE id = $1 RETURNING updated_at")
        measuring[0] = True
        changes = 0
        begin = time.monotonic()
        while (elapsed := time.monotonic() - begin) < seconds:
            if changes >= rate * elapsed:  # ahead of the schedule: wait for it
                await asyncio.sleep(0.002)
                continue
            run_id = ids[changes % runs]
            updated_at = await update.fetchval(run_id, time.time())
            await nc.publish(run_updated_subject(env_id, run_id), encode_event(RunUpdated(
                run_id=run_id, environment_id=env_id, status="DELAYED", updated_at=updated_at)))
            changes += 1
        achieved = changes / (time.monotonic() - begin)
        await asyncio.sleep(3)  # the last messages arrive
        measuring[0] = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await nc.close()
    await conn.close()
    latencies.sort()
    expected = changes * subscribers // runs
    return {"subscribers": subscribers, "runs": runs, "connect_s": connect_s, "changes": changes,
            "changes_per_s": achieved, "messages": len(latencies), "expected": expected,
            "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99), "max_ms": latencies[-1] if latencies else 0,
            "mean_ms": statistics.fmean(latencies) if latencies else 0,
            "idle_mb": idle_before / 2**20, "subscribed_mb": idle_after / 2**20,
            "per_subscriber_kb": (idle_after - idle_before) / subscribers / 1024}


def write(path: Path, r: dict[str, Any]) -> None:
    met = r["p99_ms"] < 100 and r["messages"] >= r["expected"] * 0.99
    row = (f"| {r['messages']:,} ({r['expected']:,}) | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms"
           f" | {r['max_ms']:.1f} ms | {r['idle_mb']:.0f} MB | {r['subscribed_mb']:.0f} MB"
           f" | {r['per_subscriber_kb']:.1f} KB |")
    section = f"""
## Realtime

`make bench` (`python bench/realtime.py --out docs/benchmarks.md`, this section only): the
platform's one realtime process holds {r['subscribers']:,} websocket subscribers on loopback
({r['subscribers'] // r['runs']} for each of {r['runs']:,} runs), opened in {r['connect_s']:.1f} s, while
the benchmark changes the runs as the platform's writers do (an UPDATE committed, then its
`run.updated` on NATS), {r['changes_per_s']:,.0f} changes a second for {r['changes']:,} changes. Latency: a
subscriber's receive time minus the writer's stamp taken right before the UPDATE (one machine,
one clock). The subscribers, the writer, realtime, NATS and Postgres share the 2 cores.

- {machine()}
- Commit: {commit()}

| messages received (expected) | p50 | p99 | max | realtime PSS idle | with the subscribers | per idle subscriber |
|---|---|---|---|---|---|---|
{row}

Target: p99 update latency under 100 ms with every message delivered: {'met' if met else '**missed**'}.
"""
    write_section(path, "realtime", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=1_000, help="changes a second, in all")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = on_platform("DEVELOPMENT", 4, lambda local, key: measure(local, key, args.subscribers, args.runs,
                                                                       args.rate, args.seconds))
    if args.out:
        write(args.out, results)


if __name__ == "__main__":
    main()
