"""Parents waiting on batches survive kill -9 of their supervisor and a restart of NATS: none
stuck, no child created twice, every parent resumed once with every child's result."""

from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import asyncpg
import pytest
from slipstream_platform.local import LocalPlatform
from slipstream_proto import FINAL_STATUSES

from tests.conftest import eventually
from tests.e2e.conftest import FAST_SWEEPS

pytestmark = pytest.mark.e2e

PARENTS = 100
CHILDREN = 5


def supervisor_env(key: str) -> dict[str, str]:
    return {"SLIPSTREAM_TASKS": "tests.e2e.tasks", "SLIPSTREAM_SECRET_KEY": key, "SLIPSTREAM_CONCURRENCY": "4"}


@pytest.fixture(scope="module")
def waiting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, str]]:
    folder = tmp_path_factory.mktemp("batch-crashes")
    folder.chmod(0o755)
    local = LocalPlatform(folder, fast_unsafe=True, service_env=FAST_SWEEPS)
    try:
        local.start_servers()
        key = local.bootstrap("batch-crashes")["DEVELOPMENT"]
        local.start_services(None, key)
        local.start_service("supervisor", supervisor_env(key), key="supervisor-a")
        local.wait_healthy()
        yield local, key
    finally:
        local.stop()


async def test_parents_waiting_on_batches_survive_a_supervisor_kill_and_a_nats_restart(
    waiting: tuple[LocalPlatform, str],
) -> None:
    local, key = waiting
    conn = await asyncpg.connect(local.database_url)
    try:
        async with aiohttp.ClientSession(base_url=local.api_url, headers={"Authorization": f"Bearer {key}"}) as http:

            async def trigger() -> str:
                body = {"payload": {"children": CHILDREN, "seconds": 0.1}}
                async with http.post("/api/v1/tasks/batch-waiter/trigger", json=body) as response:
                    assert response.status == 200, await response.text()
                    return str((await response.json())["id"])

            parents = [await trigger() for _ in range(PARENTS)]

        async def some_waiting(n: int) -> int:
            waiting = await conn.fetchval("SELECT count(*) FROM runs WHERE id = ANY($1::text[]) AND status = 'WAITING'",
                                          parents)
            return int(waiting) if waiting >= n else 0

        await eventually(lambda: some_waiting(20), timeout=60, message="20 parents waiting on their batches")
        local.stop_service("supervisor-a", kill=True)
        local.start_service("supervisor", supervisor_env(key), key="supervisor-b")
        local.wait_healthy(["supervisor-b"])
        await eventually(lambda: some_waiting(20), timeout=60, message="parents waiting again")
        local.nats.kill()
        local.nats.start()

        async def all_done() -> bool:
            n = await conn.fetchval("SELECT count(*) FROM runs WHERE id = ANY($1::text[]) AND status = 'COMPLETED'",
                                    parents)
            return bool(n == PARENTS)

        await eventually(all_done, timeout=180, interval=0.25, message="every parent COMPLETED")
        rows = await conn.fetch("SELECT id, output FROM runs WHERE id = ANY($1::text[])", parents)
        children: list[str] = []
        for row in rows:
            out = json.loads(row["output"])
            assert out["ok"] == [True] * CHILDREN and len(out["children"]) == CHILDREN, out
            assert [o["n"] for o in out["outputs"]] == list(range(CHILDREN)), out
            children += out["children"]
        # No child was created twice: each parent has one batch of exactly its children...
        assert len(set(children)) == PARENTS * CHILDREN
        per_parent = await conn.fetch("SELECT parent_run_id, count(*) AS n FROM runs WHERE parent_run_id = ANY($1)"
                                      " GROUP BY 1", parents)
        assert {r["parent_run_id"]: r["n"] for r in per_parent} == dict.fromkeys(parents, CHILDREN)
        assert await conn.fetchval("SELECT count(*) FROM batches WHERE parent_run_id = ANY($1)", parents) == PARENTS
        # ...every child completed once...
        assert await conn.fetchval("SELECT count(*) FROM attempts a JOIN runs r ON r.id = a.run_id"
                                   " WHERE r.parent_run_id = ANY($1) AND a.status = 'COMPLETED'",
                                   parents) == PARENTS * CHILDREN
        # ...and every parent resumed once: one completed wait each.
        waits = await conn.fetch("SELECT run_id, count(*) AS n, bool_and(status = 'COMPLETED') AS done"
                                 " FROM waitpoints WHERE run_id = ANY($1) GROUP BY 1", parents)
        assert len(waits) == PARENTS and all(w["n"] == 1 and w["done"] for w in waits)
        assert await conn.fetchval("SELECT count(*) FROM runs WHERE status NOT IN ('COMPLETED')") == 0
    finally:
        await conn.close()


async def test_a_parent_streaming_a_batch_survives_a_supervisor_kill_and_adds_no_child_twice(
    waiting: tuple[LocalPlatform, str],
) -> None:
    # 3,000 children read slowly (three chunks); the supervisor is killed once the first chunk
    # is in and the batch is still open. The run is retried by another supervisor and streams
    # again from its first item: the chunks already added come back by their request ids.
    local, key = waiting
    conn = await asyncpg.connect(local.database_url)
    try:
        async with aiohttp.ClientSession(base_url=local.api_url, headers={"Authorization": f"Bearer {key}"}) as http:
            body = {"payload": {"n": 3000, "pause": 0.001}}
            async with http.post("/api/v1/tasks/streams-a-batch/trigger", json=body) as response:
                assert response.status == 200, await response.text()
                parent = str((await response.json())["id"])

        async def streaming() -> bool:
            n = await conn.fetchval("SELECT count(*) FROM batches WHERE parent_run_id = $1 AND NOT sealed"
                                    " AND cardinality(run_ids) >= 1000", parent)
            return bool(n)

        await eventually(streaming, timeout=60, interval=0.05, message="the parent's first chunk in an open batch")
        for name in ("supervisor-a", "supervisor-b"):  # whichever the first test left running
            local.stop_service(name, kill=True)
        local.start_service("supervisor", supervisor_env(key), key="supervisor-c")
        local.wait_healthy(["supervisor-c"])

        async def done() -> str | None:
            status = await conn.fetchval("SELECT status FROM runs WHERE id = $1", parent)
            return str(status) if status in FINAL_STATUSES else None

        assert await eventually(done, timeout=180, interval=0.25, message="the parent final") == "COMPLETED"
        out = json.loads(await conn.fetchval("SELECT output FROM runs WHERE id = $1", parent))
        assert out["count"] == 3000 and out["ordered"] and out["attempt"] >= 2, out
        assert await conn.fetchval("SELECT count(*) FROM batches WHERE parent_run_id = $1", parent) == 1
        payloads = await conn.fetch("SELECT payload FROM runs WHERE parent_run_id = $1", parent)
        assert sorted(json.loads(r["payload"])["i"] for r in payloads) == list(range(3000))
        assert await conn.fetchval("SELECT count(*) FROM attempts a JOIN runs r ON r.id = a.run_id"
                                   " WHERE r.parent_run_id = $1 AND a.status = 'COMPLETED'", parent) == 3000
    finally:
        await conn.close()
