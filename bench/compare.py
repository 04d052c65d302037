"""Two commits measured by the fast-path method, interleaved: `python bench/compare.py A B`.

This machine's speed drifts by a third within an hour, so a before/after taken at different
times says little. Here each round measures commit A, then commit B, on fresh platforms, one
after the other; the report gives the medians of the rounds. The platform code (and the SDK
the producer calls) comes from a git worktree of each commit; the measurement code is this
checkout's (bench/fastpath.py), so both are measured the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEYS = [("lat_p50", "trigger -> entry p50", "{:.1f} ms"), ("lat_p99", "p99", "{:.1f} ms"),
        ("call_p50", "trigger call p50", "{:.2f} ms"), ("live_rps", "live", "{:.0f} runs/s"),
        ("drain_rps", "drain", "{:.0f} runs/s"), ("concurrent_rps", "32 callers", "{:.0f} runs/s")]

ROUND = """
import asyncio, json, sys
from bench.common import on_platform
from bench import fastpath
result = on_platform("DEVELOPMENT", 16, tasks=fastpath.TASKS,
                     measure=lambda local, key: fastpath.measure(local, key, runs={runs}))
print("RESULT " + json.dumps(result))
"""


def worktree(rev: str, folder: Path) -> Path:
    path = folder / rev.replace("/", "_")
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True,
                   capture_output=True)
    return path


def one_round(tree: Path, runs: int) -> dict[str, Any]:
    path = os.pathsep.join(str(p) for p in (tree / "proto", tree / "libs", tree / "services", ROOT))
    out = subprocess.run([sys.executable, "-c", ROUND.format(runs=runs)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": path}, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT "):]))
    raise SystemExit(f"round on {tree} failed:\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("revs", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="slipstream-compare-"))
    trees = {rev: worktree(rev, folder) for rev in args.revs}
    results: dict[str, list[dict[str, Any]]] = {rev: [] for rev in args.revs}
    try:
        for i in range(args.rounds):
            for rev, tree in trees.items():
                results[rev].append(one_round(tree, args.runs))
                print(f"round {i + 1} {rev}: " + ", ".join(
                    f"{label} {fmt.format(results[rev][-1][key])}" for key, label, fmt in KEYS), flush=True)
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    print("\n| commit | " + " | ".join(label for _, label, _ in KEYS) + " |")
    print("|---" * (len(KEYS) + 1) + "|")
    for rev in args.revs:
        cells = [fmt.format(statistics.median(r[key] for r in results[rev])) for key, _, fmt in KEYS]
        print(f"| {rev} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
