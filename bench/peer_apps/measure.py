"""One round of the fast-path method on a peer: `python -m bench.peer_apps.measure SYSTEM ...` (peers venv).

The same method as bench/fastpath.py: the producer stamps `time.time()` right before its
enqueue call, the task stamps it as its first line (bench/peer_apps/stamps.py); prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.peer_apps import stamps

ROOT = Path(__file__).resolve().parents[2]


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Peer:
    """A peer's worker command and its producer's enqueue call."""

    def __init__(self, system: str, url: str, processes: int) -> None:
        self.system = system
        self.url = url
        self.processes = processes
        self.worker: subprocess.Popen[bytes] | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="peer-stamps-"))
        self.loop = asyncio.new_event_loop()
        self.enqueue: Callable[[str, int], None]
        if system.startswith("celery"):
            os.environ["PEER_REDIS_URL"] = url
            from bench.peer_apps.celery_app import stamp

            self.enqueue = lambda kind, i: stamp.delay(kind, i) and None
        else:
            os.environ["PEER_NATS_URL"] = url
            from bench.peer_apps.taskiq_app import broker
            from bench.peer_apps.taskiq_app import stamp as kstamp

            self.loop.run_until_complete(broker.startup())

            def enqueue(kind: str, i: int) -> None:
                self.loop.run_until_complete(kstamp.kiq(kind, i))

            self.enqueue = enqueue

    def command(self) -> list[str]:
        if self.system == "celery-solo":
            return [sys.executable, "-m", "celery", "-A", "bench.peer_apps.celery_app", "worker", "--pool=solo",
                    "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        if self.system == "celery-prefork":
            return [sys.executable, "-m", "celery", "-A", "bench.peer_apps.celery_app", "worker", "--pool=prefork",
                    f"--concurrency={self.processes}", "-l", "warning", "--without-gossip", "--without-mingle",
                    "--without-heartbeat"]
        return [sys.executable, "-m", "taskiq", "worker", "bench.peer_apps.taskiq_app:broker",
                f"--workers={self.processes}", "--log-level=WARNING"]

    def start_worker(self) -> None:
        env = dict(os.environ, PEER_STAMPS=str(self.folder), PYTHONPATH=str(ROOT))
        self.worker = subprocess.Popen(self.command(), env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=sys.stderr, start_new_session=True)

    def stop_worker(self) -> None:
        if self.worker is None:
            return
        os.killpg(self.worker.pid, signal.SIGTERM)
        try:
            self.worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()
        self.worker = None

    def wait(self, kind: str, n: int, timeout: float = 900) -> dict[int, tuple[float, float]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = stamps.read(self.folder, kind)
            if len(found) >= n:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"{self.system}: not all {n} runs of {kind} recorded within {timeout}s")

    def close(self) -> None:
        self.stop_worker()
        shutil.rmtree(self.folder, ignore_errors=True)


def measure(peer: Peer, runs: int, latency_runs: int, spacing: float) -> dict[str, Any]:
    peer.start_worker()
    for i in range(50):
        peer.enqueue("warmup", i)
    peer.wait("warmup", 50, timeout=120)
    before: dict[int, float] = {}
    calls = []
    for i in range(latency_runs):
        t = time.time()
        peer.enqueue("latency", i)
        after = time.time()
        before[i] = t
        calls.append((after - t) * 1000)
        time.sleep(max(0.0, spacing - (time.time() - t)))
    found = peer.wait("latency", latency_runs)
    entry = sorted((found[i][0] - before[i]) * 1000 for i in before)
    calls.sort()
    result: dict[str, Any] = {f"lat_p{p}": pct(entry, p) for p in (50, 95, 99)}
    result |= {"lat_max": entry[-1], "call_p50": pct(calls, 50), "call_p99": pct(calls, 99)}

    first = time.time()
    for i in range(runs):
        peer.enqueue("live", i)
    found = peer.wait("live", runs)
    result["live_rps"] = runs / (max(exit for _, exit in found.values()) - first)

    peer.stop_worker()
    for i in range(runs):
        peer.enqueue("drain", i)
    peer.start_worker()
    found = peer.wait("drain", runs)
    result["drain_rps"] = runs / (max(x for _, x in found.values()) - min(e for e, _ in found.values()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=["celery-solo", "celery-prefork", "taskiq"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--spacing", type=float, default=0.02)
    args = parser.parse_args()
    peer = Peer(args.system, args.url, args.processes)
    try:
        result = measure(peer, args.runs, args.latency_runs, args.spacing)
    finally:
        peer.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
