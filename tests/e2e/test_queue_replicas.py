"""Queue limits hold with three supervisors taking runs at once, while queue-manager replicas
are killed and NATS restarts.

Three supervisors with more processes than the limits allow take runs (ADR 0009) and run
tasks (tests.e2e.replica_tasks) that record when they executed. From those records the test finds the most
runs that ever executed at once, per queue and per concurrency key: never above the limit,
and at the limit for the plain queue, so the limit is what held the runs back. While the
runs drain, the test also samples Postgres for the runs holding a slot (DEQUEUED or
EXECUTING). Every run completes exactly once, and none is left QUEUED.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from slipstream_platform.local import LocalPlatform

from tests.conftest import eventually
from tests.e2e.conftest import FAST_SWEEPS

pytestmark = pytest.mark.e2e

REPLICAS = ("queue_manager", "queue_manager-2", "queue_manager-3")
# The tasks are named after their queues (tests/e2e/replica_tasks.py).
LIMITED, LIMITED_LIMIT = "replica-limited", 3
KEYED, KEYED_LIMIT, KEYED_CAP = "replica-keyed", 1, 3  # one per key, three across the keys
TENANTS = tuple(f"tenant-{i}" for i in range(5))
LIMITED_RUNS = 150
RUNS_PER_TENANT = 50
RUNS = LIMITED_RUNS + RUNS_PER_TENANT * len(TENANTS)
# Three supervisors of 6 processes: 18 slots, more than the 3 + 3 the queues allow.
CONCURRENCY = 6


@dataclass
class Replicas:
    local: LocalPlatform
    key: str
    record: Path


def supervisor_env(key: str, record: Path) -> dict[str, str]:
    return {"SLIPSTREAM_TASKS": "tests.e2e.replica_tasks", "SLIPSTREAM_SECRET_KEY": key,
            "SLIPSTREAM_CONCURRENCY": str(CONCURRENCY), "SLIPSTREAM_TEST_RECORD": str(record)}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    folder = tmp_path_factory.mktemp("replicas")
    folder.chmod(0o755)
    record = folder / "executions.jsonl"
    local = LocalPlatform(folder, fast_unsafe=True, service_env=FAST_SWEEPS)
    try:
        local.start_servers()
        key = local.bootstrap("replicas")["DEVELOPMENT"]
        local.start_services(None, key)  # one queue-manager, "queue_manager"
        for replica in REPLICAS[1:]:
            local.start_service("queue_manager", key=replica)
        local.start_service("supervisor", supervisor_env(key, record), key="supervisor-a")
        local.start_service("supervisor", supervisor_env(key, record), key="supervisor-b")
        local.start_service("supervisor", supervisor_env(key, record), key="supervisor-c")
        local.wait_healthy()
        yield Replicas(local, key, record)
    finally:
        local.stop()


def ensure_replicas(local: LocalPlatform) -> None:
    """Start any queue-manager replica that is not running."""
    missing = [r for r in REPLICAS if r not in local.processes or local.processes[r].poll() is not None]
    for replica in missing:
        local.start_service("queue_manager", key=replica)
    local.wait_healthy(missing)


def mark(record: Path, what: str) -> None:
    """Note in the record file what the test did when, for reading it after a failure."""
    with record.open("a") as f:
        f.write(json.dumps({"event": what, "at": time.monotonic_ns()}) + "\n")


def most_at_once(intervals: list[tuple[Any, Any, Hashable]]) -> tuple[int, list[Hashable]]:
    """The most (start, end, label) intervals that overlap at one moment, and their labels.

    One interval ending as another starts is no overlap.
    """
    events = sorted([(start, 1, label) for start, _, label in intervals]
                    + [(end, -1, label) for _, end, label in intervals], key=lambda e: (e[0], e[1]))
    current: set[Hashable] = set()
    peak: list[Hashable] = []
    for _, delta, label in events:
        if delta > 0:
            current.add(label)
        else:
            current.discard(label)
        if len(current) > len(peak):
            peak = sorted(current, key=str)
    return len(peak), peak


@dataclass
class Batch:
    """The runs one test triggered, and the most of them Postgres ever showed holding a slot."""

    conn: asyncpg.Connection
    runs: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id -> (queue, key)
    slots: dict[tuple[str, str | None], int] = field(default_factory=lambda: defaultdict(int))

    @property
    def ids(self) -> list[str]:
        return list(self.runs)

    async def statuses(self) -> dict[str, int]:
        rows = await self.conn.fetch(
            "SELECT status, count(*) AS n FROM runs WHERE id = ANY($1::text[]) GROUP BY status", self.ids)
        return {r["status"]: int(r["n"]) for r in rows}

    async def sample_slots(self) -> None:
        """Runs holding a slot right now, per queue and key, and per queue (key None)."""
        rows = await self.conn.fetch(
            "SELECT queue, concurrency_key, count(*) AS n FROM runs WHERE id = ANY($1::text[])"
            " AND status IN ('DEQUEUED', 'EXECUTING') GROUP BY queue, concurrency_key", self.ids)
        per_queue: dict[str, int] = defaultdict(int)
        for r in rows:
            per_queue[r["queue"]] += r["n"]
            if r["concurrency_key"] is not None:
                key = (r["queue"], r["concurrency_key"])
                self.slots[key] = max(self.slots[key], r["n"])
        for name, n in per_queue.items():
            self.slots[(name, None)] = max(self.slots[(name, None)], n)

    async def wait_completed(self, n: int) -> int:
        """Wait until at least n runs completed, sampling slots meanwhile; return how many are left."""

        async def enough() -> int:
            await self.sample_slots()
            done = (await self.statuses()).get("COMPLETED", 0)
            return RUNS - done + 1 if done >= n else 0  # + 1: truthy when nothing is left

        return await eventually(enough, timeout=90, message=f"{n} of {RUNS} runs completed") - 1


async def trigger_backlog(replicas: Replicas, conn: asyncpg.Connection, seed: int) -> Batch:
    """Trigger RUNS runs on both queues while they are paused, then resume them.

    The whole backlog is ready when the replicas start claiming, so they compete for every
    free slot from the first moment.
    """
    rng = random.Random(seed)
    bodies: list[tuple[str, str | None]] = [(LIMITED, None)] * LIMITED_RUNS
    bodies += [(KEYED, tenant) for tenant in TENANTS for _ in range(RUNS_PER_TENANT)]
    rng.shuffle(bodies)
    batch = Batch(conn)
    headers = {"Authorization": f"Bearer {replicas.key}"}
    async with aiohttp.ClientSession(base_url=replicas.local.api_url, headers=headers) as http:
        for name in (LIMITED, KEYED):
            async with http.post(f"/api/v1/queues/{name}/pause") as response:
                assert response.status == 200

        async def trigger(n: int, task_id: str, key: str | None) -> None:
            body: dict[str, Any] = {"payload": {"n": n, "ms": rng.randint(40, 120), "key": key}}
            if key is not None:
                body["options"] = {"concurrencyKey": key}
            async with http.post(f"/api/v1/tasks/{task_id}/trigger", json=body) as response:
                assert response.status == 200, await response.text()
                batch.runs[str((await response.json())["id"])] = (task_id, key)

        for start in range(0, RUNS, 25):
            await asyncio.gather(*(trigger(n, *bodies[n]) for n in range(start, min(start + 25, RUNS))))
        for name in (LIMITED, KEYED):
            async with http.post(f"/api/v1/queues/{name}/resume") as response:
                assert response.status == 200
    assert len(batch.runs) == RUNS
    mark(replicas.record, "resumed")
    return batch


def read_records(path: Path, batch: Batch) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r.get("run") in batch.runs]


async def check_batch(record: Path, batch: Batch) -> None:
    """The limits held and were reached; every run completed, once."""
    records = read_records(record, batch)
    assert all((r["queue"], r["key"]) == batch.runs[r["run"]] for r in records)

    # No run executed twice at the same time.
    by_run: dict[str, list[tuple[int, int, Hashable]]] = defaultdict(list)
    for r in records:
        by_run[r["run"]].append((r["start"], r["end"], (r["attempt"], r["pid"], r["start"])))
    twice = {run: most_at_once(executions)[1] for run, executions in by_run.items()
             if most_at_once(executions)[0] > 1}
    assert not twice, f"runs executing twice at once (attempt, pid, start): {twice}"

    # The most runs executing at once, per queue and per (queue, key).
    intervals: dict[tuple[str, str | None], list[tuple[int, int, Hashable]]] = defaultdict(list)
    for r in records:
        intervals[(r["queue"], None)].append((r["start"], r["end"], r["run"]))
        if r["key"] is not None:
            intervals[(r["queue"], r["key"])].append((r["start"], r["end"], r["run"]))
    peaks = {group: most_at_once(group_intervals) for group, group_intervals in intervals.items()}
    print(f"\nmost runs executing at once: { {g: p[0] for g, p in peaks.items()} }")
    print(f"most runs holding a slot in Postgres's samples: {dict(batch.slots)}")
    limits: dict[tuple[str, str | None], int] = {(LIMITED, None): LIMITED_LIMIT, (KEYED, None): KEYED_CAP}
    limits.update({(KEYED, t): KEYED_LIMIT for t in TENANTS})
    over = {group: peaks[group] for group, limit in limits.items() if peaks[group][0] > limit}
    assert not over, f"limits exceeded, (queue, key) -> (runs at once, those runs): {over}"
    held = {group: n for group, n in batch.slots.items() if n > limits[group]}
    assert not held, f"more runs than the limit held a slot (DEQUEUED or EXECUTING): {held}"
    # The limits bound: the plain queue reached its limit, every key reached its own, and the
    # keyed queue reached its cap across keys (keys do not wait for each other below it).
    assert peaks[(LIMITED, None)][0] == LIMITED_LIMIT
    assert all(peaks[(KEYED, t)][0] == KEYED_LIMIT for t in TENANTS)
    assert peaks[(KEYED, None)][0] == KEYED_CAP

    # Every run executed exactly once (no worker was lost, so nothing needed a second attempt).
    executed_more = {run: sorted(labels) for run, labels in by_run.items() if len(labels) > 1}
    assert not executed_more, f"runs executed more than once: {executed_more}"
    assert set(by_run) == set(batch.runs)
    conn = batch.conn
    rows = await conn.fetch("SELECT id, status, queue, concurrency_key FROM runs WHERE id = ANY($1::text[])",
                            batch.ids)
    assert {r["id"]: (r["status"], r["queue"], r["concurrency_key"]) for r in rows} == {
        run: ("COMPLETED", *group) for run, group in batch.runs.items()}
    attempts = await conn.fetch(
        "SELECT a.run_id, a.number, a.status, a.started_at, a.completed_at, r.queue, r.concurrency_key"
        " FROM attempts a JOIN runs r ON r.id = a.run_id WHERE a.run_id = ANY($1::text[])", batch.ids)
    assert sorted((a["run_id"], a["number"], a["status"]) for a in attempts) == sorted(
        (run, 1, "COMPLETED") for run in batch.runs)
    # Postgres's own times of the attempts keep the limits too.
    db_intervals: dict[tuple[str, str | None], list[tuple[Any, Any, Hashable]]] = defaultdict(list)
    for a in attempts:
        db_intervals[(a["queue"], None)].append((a["started_at"], a["completed_at"], a["run_id"]))
        if a["concurrency_key"] is not None:
            db_intervals[(a["queue"], a["concurrency_key"])].append(
                (a["started_at"], a["completed_at"], a["run_id"]))
    over = {group: most_at_once(db_intervals[group]) for group, limit in limits.items()
            if most_at_once(db_intervals[group])[0] > limit}
    assert not over, f"attempts' times in Postgres exceed the limits: {over}"
    # Nothing of any test is left in any state but COMPLETED.
    assert await conn.fetchval("SELECT count(*) FROM runs WHERE status NOT IN ('COMPLETED')") == 0


async def test_limits_hold_while_queue_manager_replicas_are_killed(replicas: Replicas) -> None:
    local = replicas.local
    ensure_replicas(local)
    conn = await asyncpg.connect(local.database_url)
    try:
        batch = await trigger_backlog(replicas, conn, seed=1)
        # Three supervisors take while the queue-manager replicas go from three to one (they only
        # wake supervisors on time, so the drain goes on as before).
        for replica, share in (("queue_manager-2", 4), ("queue_manager", 2)):
            left = await batch.wait_completed(RUNS // share)
            local.stop_service(replica, kill=True)
            mark(replicas.record, f"killed {replica} with {left} runs left")
            assert left > 0, "the replica was killed after every run had completed"
        # And back to three: the restarted replicas join while the rest drains.
        ensure_replicas(local)
        mark(replicas.record, "queue_manager and queue_manager-2 started again")
        await batch.wait_completed(RUNS)
        mark(replicas.record, "all completed")
        await check_batch(replicas.record, batch)
    finally:
        await conn.close()


async def test_limits_hold_while_nats_restarts(replicas: Replicas) -> None:
    local = replicas.local
    ensure_replicas(local)
    conn = await asyncpg.connect(local.database_url)
    try:
        batch = await trigger_backlog(replicas, conn, seed=2)
        left = await batch.wait_completed(RUNS // 3)
        local.nats.kill()
        down_at = await conn.fetchval("SELECT now()")
        mark(replicas.record, f"killed NATS with {left} runs left")
        assert left > 0, "NATS was killed after every run had completed"

        async def went_on() -> dict[str, int]:
            """Without NATS no signal arrives, but the supervisors' periodic takes go on from
            Postgres: runs keep starting and completing, within the limits."""
            await batch.sample_slots()
            counts = await batch.statuses()
            started = await conn.fetchval(
                "SELECT count(*) FROM runs WHERE id = ANY($1::text[]) AND started_at > $2", batch.ids, down_at)
            return {**counts, "started": started} if started >= 20 else {}

        counts = await eventually(went_on, timeout=60, message="runs started while NATS is down")
        local.nats.start()
        mark(replicas.record, f"NATS started again; the runs were {counts}")
        await batch.wait_completed(RUNS)
        mark(replicas.record, "all completed")
        await check_batch(replicas.record, batch)
    finally:
        await conn.close()
