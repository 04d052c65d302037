"""Slipstream beside its peers, by one method in one run: `make bench-peers`.

Installs Celery (with Redis as broker and result backend, so every run leaves a record) and
taskiq with its NATS JetStream broker into their own venv under .slipstream/, takes a Redis
server from Debian's package, and runs the fast-path method (bench/fastpath.py,
bench/peer_apps/measure.py) on each system in turn, round after round: Slipstream through its
local platform, Celery with the solo pool and with the prefork pool, taskiq. Writes one table
of medians (and every round) to the peers section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slipstream_platform.embedded import EmbeddedNats, free_port  # noqa: E402

from bench import fastpath  # noqa: E402
from bench.common import commit, machine, on_platform, write_section  # noqa: E402

VENV = ROOT / ".slipstream" / "peers-venv"
PACKAGES = ["celery[redis]==5.7.0", "redis==8.1.0", "taskiq==0.13.0", "taskiq-nats==0.7.0"]
SYSTEMS = {
    "slipstream": "**Slipstream** (16 worker processes)",
    "celery-solo": "Celery 5.7 + Redis, solo pool",
    "celery-prefork": "Celery 5.7 + Redis, prefork pool (2 processes, its default here)",
    "taskiq": "taskiq 0.13 + NATS JetStream (2 worker processes; keeps no run records)",
}
COLUMNS = [("lat_p50", "{:.1f}"), ("lat_p99", "{:.1f}"), ("call_p50", "{:.2f}"), ("live_rps", "{:,.0f}"),
           ("drain_rps", "{:,.0f}")]


def python() -> Path:
    """The peers' venv, created and filled on first use."""
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == " ".join(PACKAGES):
        return VENV / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *PACKAGES], check=True)
    stamp.write_text(" ".join(PACKAGES))
    return VENV / "bin" / "python"


def redis_server() -> str:
    """The redis-server binary: on PATH, else from Debian's package (needs root and apt)."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "redis-server"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("redis-server")
    if not found:
        raise SystemExit("redis-server not found: install Debian's redis-server package (apt-get install redis-server)")
    return found


def peer(system: str, runs: int) -> dict[str, Any]:
    """One round of the method on a peer, on a fresh broker."""
    folder = Path(tempfile.mkdtemp(prefix="peer-"))
    server: subprocess.Popen[bytes] | None = None
    nats: EmbeddedNats | None = None
    try:
        if system.startswith("celery"):
            port = free_port()
            server = subprocess.Popen([redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
            url = f"redis://127.0.0.1:{port}/0"
            time.sleep(0.5)
        else:
            nats = EmbeddedNats(folder / "nats")
            url = nats.start()
        command = [str(python()), "-m", "bench.peer_apps.measure", system, "--url", url, "--runs", str(runs)]
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode != 0:
            raise SystemExit(f"{system} failed:\n{out.stderr[-3000:]}")
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        if nats is not None:
            nats.stop()
        shutil.rmtree(folder, ignore_errors=True)


def slipstream(runs: int) -> dict[str, Any]:
    return on_platform("DEVELOPMENT", 16, tasks=fastpath.TASKS,
                       measure=lambda local, key: fastpath.measure(local, key, runs=runs, concurrent_runs=False))


def write(path: Path, rounds: dict[str, list[dict[str, Any]]], runs: int) -> None:
    def cell(system: str, key: str, fmt: str) -> str:
        values = [r[key] for r in rounds[system]]
        spread = " (" + ", ".join(fmt.format(v) for v in values) + ")" if len(values) > 1 else ""
        text = fmt.format(statistics.median(values)) + spread
        return f"**{text}**" if system == "slipstream" else text

    rows = "\n".join(f"| {SYSTEMS[s]} | " + " | ".join(cell(s, key, fmt) for key, fmt in COLUMNS) + " |"
                     for s in SYSTEMS)
    section = f"""## Beside the peers

`make bench-peers` (`python bench/peers.py --out docs/benchmarks.md`, this section only): every
system measured by the same method in the same run, one after the other, {len(rounds['slipstream'])} rounds;
medians, with each round in brackets. The producer stamps `time.time()` right before its
enqueue call (`await tasks.trigger`, `task.delay`, `await task.kiq`); the task stamps it as its
first line. Latency: 200 enqueues 20 ms apart. Live: {runs:,} enqueues back to back from one
producer with the worker running, to the last completion. Drain: {runs:,} queued with no worker,
then the worker starts; from the first start to the last completion. Slipstream runs on its local
platform with default durability (fsync on); Celery's Redis keeps no snapshots; taskiq keeps no run
records.

- Machine: {machine()}
- Commit: {commit()}, {time.strftime('%Y-%m-%d')}

| system | trigger -> entry p50 (ms) | p99 (ms) | trigger call p50 (ms) | live runs/s | drain runs/s |
|---|---|---|---|---|---|
{rows}
"""
    write_section(path, "peers", section)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    python()
    redis_server()
    rounds: dict[str, list[dict[str, Any]]] = {system: [] for system in SYSTEMS}
    for _ in range(args.rounds):
        for system in SYSTEMS:
            result = slipstream(args.runs) if system == "slipstream" else peer(system, args.runs)
            print(system, {k: round(v, 2) for k, v in result.items()})
            rounds[system].append(result)
    if args.out:
        write(args.out, rounds, args.runs)


if __name__ == "__main__":
    main()
