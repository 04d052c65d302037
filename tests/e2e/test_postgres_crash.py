"""Kill Postgres with SIGKILL while runs are claimed and started (steps that commit without
waiting for the WAL flush, ADR 0008): every acknowledged run still reaches exactly one final
state, none is lost and none is stuck."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator

import aiohttp
import asyncpg
import pytest
from slipstream_platform.db import connect_when_ready
from slipstream_platform.local import LocalPlatform

from tests.conftest import eventually
from tests.e2e.conftest import FAST_SWEEPS

pytestmark = pytest.mark.e2e

RUNS = 240
# Workers are not declared stopped during the short outages; a DEQUEUED run is requeued quickly
# (none is expected: a take claims and starts in one transaction).
SWEEPS = {**FAST_SWEEPS, "SLIPSTREAM_WORKER_TIMEOUT": "60", "SLIPSTREAM_DEQUEUED_TIMEOUT": "3"}


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, str]]:
    folder = tmp_path_factory.mktemp("pg-crash")
    folder.chmod(0o755)
    local = LocalPlatform(folder, service_env=SWEEPS)  # fsync and synchronous commit on
    try:
        local.start_servers()
        key = local.bootstrap("pg-crash")["DEVELOPMENT"]
        local.start_services("tests.e2e.tasks", key, concurrency=8)
        yield local, key
    finally:
        local.stop()


def kill_postgres(local: LocalPlatform) -> None:
    """SIGKILL to the postmaster and every backend at once, then restart. (Each backend leads
    its own process group, so a signal to the postmaster's group does not reach them.)"""
    proc = local.postgres.proc
    assert proc is not None
    pids = [proc.pid, *_descendants(proc.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    # A postgres started while a killed backend still holds the shared memory refuses to start
    # ("pre-existing shared memory block is still in use").
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in pids[1:]) and time.monotonic() < deadline:
        time.sleep(0.02)
    local.postgres.start()


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    children = [int(c) for c in f.read().split()]
                found += children
                todo += children
        except OSError:
            continue
    return found


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (a zombie holds no shared memory)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_killing_postgres_mid_flight_loses_no_run(durable: tuple[LocalPlatform, str]) -> None:
    local, key = durable
    acknowledged: list[str] = []
    async with aiohttp.ClientSession(base_url=local.api_url, headers={"Authorization": f"Bearer {key}"}) as http:

        async def trigger(n: int) -> None:
            body = {"payload": {"seconds": 0.02, "n": n}}
            async with http.post("/api/v1/tasks/sleepy/trigger", json=body) as response:
                if response.status == 200:  # while Postgres is down the API answers 503: not acknowledged
                    acknowledged.append(str((await response.json())["id"]))

        async def producer() -> None:
            for start in range(0, RUNS, 8):
                await asyncio.gather(*(trigger(n) for n in range(start, start + 8)), return_exceptions=True)

        feeding = asyncio.create_task(producer())

        async def completed_at_least(n: int) -> bool:
            try:
                conn = await asyncpg.connect(local.database_url)
            except Exception:  # down, or starting up after the kill
                return False
            try:
                return int(await conn.fetchval("SELECT count(*) FROM runs WHERE status = 'COMPLETED'")) >= n
            finally:
                await conn.close()

        # Twice, while runs are being claimed, started and finished.
        for done in (40, 120):
            await eventually(lambda done=done: completed_at_least(done), timeout=90, message=f"{done} completed")
            await asyncio.to_thread(kill_postgres, local)
        await feeding

    conn = await connect_when_ready(local.database_url)
    try:
        async def all_final() -> dict[str, int] | None:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM runs GROUP BY status")
            counts = {r["status"]: r["n"] for r in rows}
            return None if counts.keys() <= {"COMPLETED"} else counts

        async def done() -> bool:
            return await all_final() is None

        try:
            await eventually(done, timeout=120, interval=0.5, message="every run COMPLETED")
        except AssertionError:
            stuck = await conn.fetch("SELECT id, status, attempt_count, error FROM runs"
                                     " WHERE status <> 'COMPLETED' LIMIT 5")
            examples = [dict(r) for r in stuck]
            raise AssertionError(f"not every run completed: {await all_final()}; e.g. {examples}") from None
        rows = await conn.fetch("SELECT id FROM runs")
        # Every acknowledged trigger was durable; no run exists that was not asked for.
        assert set(acknowledged) <= {r["id"] for r in rows}
        assert len(acknowledged) >= RUNS // 2
        per_run = await conn.fetch(
            "SELECT r.id, count(a.id) FILTER (WHERE a.status = 'COMPLETED') AS ok,"
            " count(a.id) FILTER (WHERE a.status = 'EXECUTING') AS running"
            " FROM runs r LEFT JOIN attempts a ON a.run_id = r.id GROUP BY r.id"
        )
        assert all(r["ok"] == 1 and r["running"] == 0 for r in per_run), [dict(r) for r in per_run if r["ok"] != 1]
    finally:
        await conn.close()
