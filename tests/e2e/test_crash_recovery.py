"""Kill services and NATS mid-flight: every run still reaches exactly one final state."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import asyncpg
import pytest
from slipstream_platform.local import LocalPlatform

from tests.conftest import eventually
from tests.e2e.conftest import FAST_SWEEPS

pytestmark = pytest.mark.e2e

RUNS = 300


def supervisor_env(key: str) -> dict[str, str]:
    return {"SLIPSTREAM_TASKS": "tests.e2e.tasks", "SLIPSTREAM_SECRET_KEY": key,
            "SLIPSTREAM_CONCURRENCY": "4"}


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, str]]:
    folder = tmp_path_factory.mktemp("chaos")
    folder.chmod(0o755)
    local = LocalPlatform(folder, fast_unsafe=True, service_env=FAST_SWEEPS)
    try:
        local.start_servers()
        key = local.bootstrap("chaos")["DEVELOPMENT"]
        local.start_services(None, key)
        local.start_service("supervisor", supervisor_env(key), key="supervisor-a")
        local.start_service("supervisor", supervisor_env(key), key="supervisor-b")
        local.wait_healthy()
        yield local, key
    finally:
        local.stop()


async def count_completed(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM runs WHERE status = 'COMPLETED'"))


async def test_kill_queue_manager_supervisor_and_nats_mid_flight(chaos: tuple[LocalPlatform, str]) -> None:
    local, key = chaos
    conn = await asyncpg.connect(local.database_url)
    try:
        async with aiohttp.ClientSession(base_url=local.api_url, headers={"Authorization": f"Bearer {key}"}) as http:

            async def trigger(n: int) -> str:
                body = {"payload": {"seconds": 0.1, "n": n}}
                async with http.post("/api/v1/tasks/sleepy/trigger", json=body) as response:
                    assert response.status == 200
                    return str((await response.json())["id"])

            ids: list[str] = []
            for start in range(0, RUNS, 25):
                ids += await asyncio.gather(*(trigger(n) for n in range(start, min(start + 25, RUNS))))

        await eventually(lambda: _at_least(conn, 40), timeout=60, message="40 runs completed")

        async def both_executing() -> bool:
            # Supervisors take their own runs (ADR 0009): kill one while both hold runs, so the
            # killed one leaves attempts for the sweeper to find stalled.
            busy = await conn.fetchval("SELECT count(DISTINCT worker_id) FROM runs WHERE status = 'EXECUTING'")
            return bool(busy == 2)

        await eventually(both_executing, timeout=30, interval=0.005, message="both supervisors executing runs")
        local.stop_service("queue_manager", kill=True)
        local.stop_service("supervisor-a", kill=True)
        local.start_service("queue_manager")
        local.start_service("supervisor", supervisor_env(key), key="supervisor-c")
        local.wait_healthy(["queue_manager", "supervisor-c"])

        await eventually(lambda: _at_least(conn, 120), timeout=60, message="120 runs completed")
        local.nats.kill()
        local.nats.start()

        async def all_final() -> bool:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM runs GROUP BY status")
            counts = {r["status"]: r["n"] for r in rows}
            return counts == {"COMPLETED": RUNS}

        await eventually(all_final, timeout=120, interval=0.25, message="every run COMPLETED")
        # Exactly one successful attempt per run, and no attempt left running.
        per_run = await conn.fetch(
            "SELECT run_id, count(*) FILTER (WHERE status = 'COMPLETED') AS ok,"
            " count(*) FILTER (WHERE status = 'EXECUTING') AS running FROM attempts GROUP BY run_id"
        )
        assert len(per_run) == RUNS
        assert all(r["ok"] == 1 and r["running"] == 0 for r in per_run)
        assert sorted(r["run_id"] for r in per_run) == sorted(ids)
        outputs = await conn.fetch("SELECT (payload->>'n')::int AS n, (output->>'n')::int AS out FROM runs")
        assert all(r["n"] == r["out"] for r in outputs)
        # The killed supervisor's attempts were found stalled by the sweeper and retried elsewhere.
        assert await conn.fetchval("SELECT count(*) FROM workers WHERE stopped_at IS NOT NULL") >= 1
        stalled = await conn.fetchval(
            "SELECT count(*) FROM attempts WHERE error->>'name' = 'TaskRunStalledError'"
        )
        per_worker = await conn.fetch("SELECT worker_id, count(*) AS n, count(*) FILTER (WHERE status <> 'COMPLETED')"
                                      " AS not_completed FROM attempts GROUP BY 1")
        assert stalled >= 1, [dict(r) for r in per_worker]
    finally:
        await conn.close()


async def _at_least(conn: asyncpg.Connection, n: int) -> bool:
    return await count_completed(conn) >= n


async def test_a_retry_back_off_survives_a_restart_of_every_service(chaos: tuple[LocalPlatform, str]) -> None:
    local, key = chaos
    conn = await asyncpg.connect(local.database_url)
    try:
        async with aiohttp.ClientSession(base_url=local.api_url, headers={"Authorization": f"Bearer {key}"}) as http:
            async with http.post("/api/v1/tasks/slow-retry/trigger", json={}) as response:
                run_id = (await response.json())["id"]

        async def backing_off() -> bool:
            row = await conn.fetchrow("SELECT status, attempt_count FROM runs WHERE id = $1", run_id)
            return row is not None and row["status"] == "QUEUED" and row["attempt_count"] == 1

        await eventually(backing_off, message="first attempt failed, retry pending")
        # Every service goes down hard while the retry waits in Postgres, then comes back.
        for service in list(local.processes):
            local.stop_service(service, kill=True)
        local.start_services(None, key)
        local.start_service("supervisor", supervisor_env(key), key="supervisor-after")
        local.wait_healthy()

        async def completed() -> bool:
            status = await conn.fetchval("SELECT status FROM runs WHERE id = $1", run_id)
            return status == "COMPLETED"

        await eventually(completed, timeout=60, message="retried run completed after the restart")
        attempts = await conn.fetch("SELECT status FROM attempts WHERE run_id = $1 ORDER BY number", run_id)
        assert [a["status"] for a in attempts] == ["FAILED", "COMPLETED"]
    finally:
        await conn.close()
