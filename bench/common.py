"""What every benchmark script shares: the machine line, percentiles, a platform to measure
on, and the sections of docs/benchmarks.md each script owns."""

from __future__ import annotations

import asyncio
import os
import platform as host
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from slipstream_platform.local import LocalPlatform

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile of sorted `values` (nearest rank)."""
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, {host.system()} {host.release()},"
            f" Python {host.python_version()}")


def commit() -> str:
    """The commit measured, with -dirty when the tree has changes."""
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True)
    return (sha.stdout.strip() or "uncommitted") + ("-dirty" if dirty.stdout.strip() else "")


def on_platform(environment_type: str, concurrency: int, measure: Callable[[LocalPlatform, str], Awaitable[T]],
                tasks: str = "bench.noop_tasks") -> T:
    """Start a whole local platform serving the module `tasks`, measure, stop it."""
    folder = Path(tempfile.mkdtemp(prefix="slipstream-bench-"))
    folder.chmod(0o755)
    local = LocalPlatform(folder, service_env={"SLIPSTREAM_LOG_LEVEL": "WARNING"})
    try:
        local.start_servers()
        key = local.bootstrap("bench")[environment_type]
        os.chdir(ROOT)
        local.start_services(tasks, key, concurrency=concurrency)
        results = asyncio.run(measure(local, key))
    finally:
        local.stop()
        shutil.rmtree(folder, ignore_errors=True)  # about 100 MB of NATS and Postgres data
    print(results)
    return results


def keep_section(path: Path, marker: str, section: str | None = None) -> str:
    """The report section between `<!-- marker -->` lines in `path` (replaced by `section` if given)."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if section is not None:
        return f"{start}\n{section.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        return text[text.index(start): text.index(end) + len(end)] + "\n"
    return ""


def write_section(path: Path, marker: str, section: str) -> None:
    """Put `section` between its markers in `path`, in place of the old one or at the end."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    old = keep_section(path, marker)
    new = keep_section(path, marker, section)
    path.write_text(text.replace(old, new) if old else text.rstrip("\n") + "\n\n" + new)
    print(f"wrote {path}")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
            found += [int(c) for c in text.split()]
    except OSError:
        pass
    return found


def pss_bytes(pids: Sequence[int]) -> int:
    """Proportional set size of these processes and all their descendants (Linux)."""
    seen: set[int] = set()
    todo = list(pids)
    total = 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += _children(pid)
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
    return total


def flush_latency(folder: Path, n: int = 500, spacing: float = 0.01) -> dict[str, float]:
    """fdatasync of one 8 KiB write in `folder` (the disk Postgres commits to), spaced as
    a trickle of commits would be: p50, p99 and max in ms."""
    path = folder / "flush-probe.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    took = []
    try:
        for i in range(n):
            os.pwrite(fd, b"x" * 8192, (i % 64) * 8192)
            started = time.perf_counter()
            os.fdatasync(fd)
            took.append((time.perf_counter() - started) * 1000)
            time.sleep(spacing)
    finally:
        os.close(fd)
        path.unlink()
    took.sort()
    return {"flush_p50": pct(took, 50), "flush_p99": pct(took, 99), "flush_max": took[-1]}
