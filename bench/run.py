"""Fast-path benchmarks: `make bench` (writes their section of docs/benchmarks.md).

Each round starts a fresh local platform (embedded NATS and Postgres with default durability,
the five services as processes, one supervisor with 16 worker processes) and measures what
bench/fastpath.py describes: trigger -> function entry latency and where it goes, the trigger
call, live and drain throughput with one producer, 32 concurrent callers, the set-based
trigger path, and memory. The report gives every round and their median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import fastpath  # noqa: E402
from bench.common import commit, flush_latency, machine, on_platform, write_section  # noqa: E402

# (key, label, format) of each reported figure.
ROWS = [
    ("lat_p50", "trigger -> function entry, p50", "{:.1f} ms"),
    ("lat_p95", "trigger -> function entry, p95", "{:.1f} ms"),
    ("lat_p99", "trigger -> function entry, p99", "{:.1f} ms"),
    ("call_p50", "trigger call (`await tasks.trigger`), p50", "{:.2f} ms"),
    ("call_p99", "trigger call, p99", "{:.2f} ms"),
    ("live_rps", "live: one producer, 5,000 runs back to back", "{:.0f} runs/s"),
    ("drain_rps", "drain: 5,000 queued, then the supervisor starts", "{:.0f} runs/s"),
    ("concurrent_rps", "32 concurrent callers, 5,000 runs", "{:.0f} runs/s"),
    ("set_based_ms", "set-based trigger: 1,000 runs planned, inserted, committed (median of 5)", "{:.1f} ms"),
    ("hop_client_to_row", "hop: producer's stamp -> the run row's transaction", "{:.2f} ms"),
    ("hop_row_to_dequeued", "hop: row -> claimed (`dequeued_at`)", "{:.2f} ms"),
    ("hop_dequeued_to_started", "hop: claimed -> attempt started", "{:.2f} ms"),
    ("hop_started_to_entry", "hop: attempt started -> task function entry", "{:.2f} ms"),
]


def median_of(rounds: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def table(rounds: list[dict[str, Any]]) -> str:
    head = "| | " + " | ".join(f"round {i + 1}" for i in range(len(rounds))) + " | median |"
    lines = [head, "|---" * (len(rounds) + 2) + "|"]
    for key, label, fmt in ROWS:
        cells = [fmt.format(r[key]) for r in rounds] + [f"**{fmt.format(median_of(rounds, key))}**"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(path: Path, rounds: list[dict[str, Any]], runs: int, flush: dict[str, float]) -> None:
    memory = next(r for r in rounds if "idle_mb" in r)
    section = f"""## Fast path (trigger to function entry, and throughput)

`make bench` (`python bench/run.py --out docs/benchmarks.md`, this section only). Each round
starts a fresh platform on this machine: embedded nats-server and Postgres (default
durability: fsync and synchronous commit on for every acknowledged trigger and every
attempt's end; ADR 0008 lists the two steps that do not wait for the flush), the five
services as processes, one supervisor with 16 worker processes. The
task returns `time.time()` taken as its first line; the producer takes `time.time()` right
before `await tasks.trigger(...)` (the Python SDK, one call at a time, as users write it).

- Machine: {machine()}
- Commit: {commit()}, {time.strftime('%Y-%m-%d')}
- Latency: 200 triggers, 20 ms apart. Live: {runs:,} triggers back to back, runs/s to the last
  COMPLETED in Postgres. Drain: {runs:,} runs triggered with no worker, then the supervisor
  starts; runs/s from the first function entry to the last completion.

{table(rounds)}

Memory (PSS of every process: services, worker processes, NATS, Postgres): **{memory['idle_mb']:.0f} MB**
idle; {memory['queued_mb']:+.0f} MB with 10,000 more runs queued (a paused queue), whose rows
and indexes take {memory['queued_disk_mb']:.1f} MB of disk in Postgres.

The disk: one fdatasync of an 8 KiB write, 500 times 10 ms apart, in the folder the platform's
Postgres writes to, measured in the same run: p50 {flush['flush_p50']:.2f} ms, p99
{flush['flush_p99']:.1f} ms, max {flush['flush_max']:.0f} ms. Every acknowledged trigger waits for
one such flush (its commit), so the trigger's p99 cannot be below the disk's.

The hops are medians of Postgres timestamps (same clock): the run's `created_at` (its INSERT's
transaction start), `dequeued_at` (the claim's), the attempt's `started_at` (the start's), and
the function's own stamp. Peers measured the same way, in the same run, are in the peers section
(`make bench-peers`).
"""
    write_section(path, "fastpath", section)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rounds = []
    for i in range(args.rounds):
        rounds.append(on_platform(
            "DEVELOPMENT", 16, tasks=fastpath.TASKS,
            measure=lambda local, key, first=(i == 0): fastpath.measure(
                local, key, runs=args.runs, memory_runs=10_000 if first else 0, set_based_runs=True),
        ))
    flush = flush_latency(Path(tempfile.gettempdir()))
    if args.out:
        write(args.out, rounds, args.runs, flush)


if __name__ == "__main__":
    main()
