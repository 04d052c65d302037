"""Where a peer's task writes its stamps: one file per worker process, a line per run."""

from __future__ import annotations

import os
import time
from pathlib import Path

_file = None


def record(kind: str, i: int, entry: float) -> None:
    """`kind i entry exit`, flushed at once (the exit stamp is the run's completion)."""
    global _file
    if _file is None:
        _file = open(Path(os.environ["PEER_STAMPS"]) / f"{os.getpid()}.log", "a")  # noqa: SIM115
    _file.write(f"{kind} {i} {entry!r} {time.time()!r}\n")
    _file.flush()


def read(folder: Path, kind: str) -> dict[int, tuple[float, float]]:
    """i -> (entry, exit) of every run of `kind` recorded so far."""
    found: dict[int, tuple[float, float]] = {}
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == kind:
                found[int(parts[1])] = (float(parts[2]), float(parts[3]))
    return found
