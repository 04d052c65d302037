"""A mixed load over a 3-node NATS cluster and replicas of every service (two trigger-apis behind
the test's own round-robin, two realtimes, two queue-managers, two schedulers, three
supervisors), while each replica, the leader of each stream (the dispatch stream, the payload
store's), a NATS follower and Postgres are killed with SIGKILL in turn and started again.

The load: retries, concurrency keys under limits, delays, a child and a batch waited for and a
timer (`trigger_and_wait`, `batch_trigger_and_wait`, `wait.for_`), batches, idempotency keys,
cancels and a schedule firing. `make test` runs it with SLIPSTREAM_CHAOS_RUNS=300 runs,
`make chaos` with 10,000. Asserted: no acknowledged trigger lost, no run stuck after recovery, no
run with two final states or completed twice, never more runs at once than a queue or key allows
(recorded by the tasks themselves), every parent resumed once with its children's results; the
time to recover after each fault is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
import pytest
from slipstream_platform.embedded import EmbeddedNatsCluster, free_port
from slipstream_platform.local import LocalPlatform
from slipstream_platform.packets import BUCKET
from slipstream_proto.events import DISPATCH_STREAM

from tests.conftest import eventually
from tests.e2e.conftest import FAST_SWEEPS
from tests.e2e.test_postgres_crash import kill_postgres
from tests.e2e.test_queue_replicas import most_at_once

pytestmark = pytest.mark.e2e

RUNS = int(os.environ.get("SLIPSTREAM_CHAOS_RUNS", "300"))
# The load is spread over this long, so that the faults land in it.
LOAD_SECONDS = float(os.environ.get("SLIPSTREAM_CHAOS_SECONDS", "45"))
PRODUCERS = 6
TENANTS = tuple(f"tenant-{i}" for i in range(4))
FINAL = {"COMPLETED", "CANCELED", "FAILED", "CRASHED", "SYSTEM_FAILURE", "TIMED_OUT", "EXPIRED"}
# Killed supervisors are declared dead after 5 s; a DEQUEUED run whose start was lost is requeued after 3 s.
SWEEPS = {**FAST_SWEEPS, "SLIPSTREAM_WORKER_TIMEOUT": "5", "SLIPSTREAM_DEQUEUED_TIMEOUT": "3"}
REPLICAS = ("trigger_api", "trigger_api-2", "realtime", "realtime-2", "queue_manager", "queue_manager-2",
            "scheduler", "scheduler-2", "supervisor-a", "supervisor-b", "supervisor-c")


@dataclass
class Chaos:
    local: LocalPlatform
    key: str
    record: Path
    envs: dict[str, tuple[str, dict[str, str]]]
    api_urls: list[str]


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    folder = tmp_path_factory.mktemp("chaos-suite")
    folder.chmod(0o755)
    record = folder / "executions.jsonl"
    local = LocalPlatform(folder, service_env=SWEEPS, cluster=3)  # fsync and synchronous commit on
    try:
        local.start_servers()
        key = local.bootstrap("chaos")["DEVELOPMENT"]
        local.start_services(None, key)  # trigger_api, realtime, queue_manager, scheduler
        supervisor = {"SLIPSTREAM_TASKS": "tests.chaos.tasks", "SLIPSTREAM_SECRET_KEY": key,
                      "SLIPSTREAM_CONCURRENCY": "6", "SLIPSTREAM_TEST_RECORD": str(record)}
        envs: dict[str, tuple[str, dict[str, str]]] = {
            name: (name, {"SLIPSTREAM_HTTP_PORT": str(local.ports[name])})
            for name in ("trigger_api", "realtime", "queue_manager", "scheduler")}
        envs |= {"trigger_api-2": ("trigger_api", {"SLIPSTREAM_HTTP_PORT": str(free_port())}),
                 "realtime-2": ("realtime", {"SLIPSTREAM_HTTP_PORT": str(free_port())}),
                 "queue_manager-2": ("queue_manager", {}), "scheduler-2": ("scheduler", {}),
                 **{f"supervisor-{s}": ("supervisor", supervisor) for s in "abc"}}
        for replica, (service, env) in envs.items():
            if replica not in local.processes:
                local.start_service(service, env, key=replica)
        local.wait_healthy()
        urls = [local.api_url, f"http://127.0.0.1:{envs['trigger_api-2'][1]['SLIPSTREAM_HTTP_PORT']}"]
        yield Chaos(local, key, record, envs, urls)
    finally:
        local.stop()


@dataclass
class Load:
    """What the test was told it made, and what it expects each run to end as."""

    chaos: Chaos
    http: aiohttp.ClientSession
    expected: dict[str, tuple[str, Any]] = field(default_factory=dict)  # run id -> (status, output)
    parents: list[str] = field(default_factory=list)
    cached: list[tuple[str, str]] = field(default_factory=list)  # (first id, id of the same trigger again)
    turn: int = 0

    def headers(self, request_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.chaos.key}", "x-slipstream-request-id": request_id}

    async def post(self, path: str, body: Any, request_id: str | None = None) -> dict[str, Any]:
        """POST to the trigger-apis in turn until one answers: the same request id each time, so a
        retry after a lost answer makes nothing twice."""
        request_id = request_id or uuid.uuid4().hex
        deadline = time.monotonic() + 90
        while True:
            self.turn += 1
            url = self.chaos.api_urls[self.turn % len(self.chaos.api_urls)]
            try:
                async with self.http.post(url + path, json=body, headers=self.headers(request_id),
                                          timeout=aiohttp.ClientTimeout(total=10)) as response:
                    if response.status < 300:
                        answer: dict[str, Any] = await response.json()
                        return answer
                    if response.status not in (502, 503, 504):
                        raise AssertionError(f"POST {path}: {response.status} {await response.text()}")
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"POST {path}: no trigger-api answered for 90 s")
            await asyncio.sleep(0.2)

    async def trigger(self, task: str, payload: Any, expect: tuple[str, Any], **options: Any) -> str:
        run_id = str((await self.post(f"/api/v1/tasks/{task}/trigger",
                                      {"payload": payload, "options": options}))["id"])
        self.expected[run_id] = expect
        return run_id

    async def item(self, n: int) -> None:
        """One unit of the mixed load."""
        kind = n % 20
        if n % 100 == 50:  # a payload over 512 KB: kept in the payload store (a replicated stream)
            await self.trigger("chaos-flaky", {"n": n, "pad": "x" * 600_000}, ("COMPLETED", n))
        elif kind < 7:
            await self.trigger("chaos-flaky", {"n": n, "fail": n % 3 == 0}, ("COMPLETED", n))
        elif kind < 9:
            await self.trigger("chaos-flaky", {"n": n}, ("COMPLETED", n), delay="1s")
        elif kind < 13:
            tenant = TENANTS[n % len(TENANTS)]
            await self.trigger("chaos-keyed", {"n": n, "key": tenant}, ("COMPLETED", n), concurrencyKey=tenant)
        elif kind < 15:
            self.parents.append(await self.trigger("chaos-parent", {"n": n}, ("COMPLETED", 6 * n)))
        elif kind < 16:
            options = {"idempotencyKey": f"chaos-{n}"}
            first = await self.trigger("chaos-flaky", {"n": n}, ("COMPLETED", n), **options)
            again = await self.trigger("chaos-flaky", {"n": n}, ("COMPLETED", n), **options)
            self.cached.append((first, again))
        elif kind < 17:
            run_id = await self.trigger("chaos-sleep", {"seconds": 120}, ("CANCELED", None))
            await self.post(f"/api/v2/runs/{run_id}/cancel", None)
        else:
            items = [{"payload": {"n": n * 100 + i}} for i in range(3)]
            answer = await self.post("/api/v1/tasks/chaos-flaky/batch", {"items": items})
            for run, item in zip(answer["runs"], items, strict=True):
                self.expected[run["id"]] = ("COMPLETED", item["payload"]["n"])

    def units(self) -> int:
        """How many units make RUNS runs (a unit makes 1 run, a batch 3, a parent 4)."""
        per_20 = 7 + 2 + 4 + 2 * 4 + 1 + 1 + 3 * 3
        return max(20, RUNS * 20 // per_20)


async def produce(load: Load, done: asyncio.Event) -> None:
    units = load.units()
    started = time.monotonic()
    queue_: asyncio.Queue[int] = asyncio.Queue()
    for n in range(1, units + 1):
        queue_.put_nowait(n)

    async def producer() -> None:
        while not queue_.empty():
            n = queue_.get_nowait()
            # Paced over LOAD_SECONDS, so that every fault meets load.
            ahead = started + LOAD_SECONDS * n / units - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            await load.item(n)

    try:
        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    finally:
        done.set()


async def stream_info(local: LocalPlatform, stream: str) -> Any:
    nc = await nats.connect(local.nats.url.split(","), connect_timeout=5)
    try:
        return await asyncio.wait_for(nc.jetstream().stream_info(stream), 3)
    except (nats.errors.Error, TimeoutError):
        return None
    finally:
        await nc.close()


async def fault(chaos: Chaos, what: str) -> None:
    """Kill one thing with SIGKILL and start it again."""
    local = chaos.local
    if what in chaos.envs:
        service, env = chaos.envs[what]
        local.stop_service(what, kill=True)
        local.start_service(service, env, key=what)
        await asyncio.to_thread(local.wait_healthy, [what])
        return
    if what == "postgres":
        await asyncio.to_thread(kill_postgres, local)
        return
    nodes = local.nats
    assert isinstance(nodes, EmbeddedNatsCluster)
    # The leader of each stream (the dispatch stream, the payload store's), or a follower.
    stream = f"OBJ_{BUCKET}" if what == "nats-leader-packets" else DISPATCH_STREAM.name
    info = await eventually(lambda: stream_info(local, stream), timeout=30, message=f"{stream}'s info")
    name = info.cluster.leader if what.startswith("nats-leader") else (info.cluster.replicas or [])[0].name
    node = nodes.node_of(name)
    nodes.kill(node)
    await asyncio.to_thread(nodes.start_node, node)


async def recovery(load: Load) -> float:
    """Seconds until a run triggered now completes."""
    started = time.monotonic()
    run_id = await load.trigger("chaos-probe", None, ("COMPLETED", "ok"))

    async def completed() -> bool:
        return await status_of(load, run_id) == "COMPLETED"

    await eventually(completed, timeout=90, interval=0.2, message=f"the probe {run_id} after a fault")
    return time.monotonic() - started


async def status_of(load: Load, run_id: str) -> str | None:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with load.http.get(f"{load.chaos.api_urls[0]}/api/v3/runs/{run_id}",
                                 headers={"Authorization": f"Bearer {load.chaos.key}"}) as response:
            if response.status == 200:
                return str((await response.json())["status"])
    return None


async def test_a_mixed_load_survives_every_fault(chaos: Chaos, tmp_path: Path) -> None:
    faults = [*REPLICAS, "nats-leader", "nats-leader-packets", "nats-follower", "postgres"]
    recovered: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        load = Load(chaos, http)
        schedule = await load.post("/api/v1/schedules", {"task": "chaos-scheduled", "cron": "* * * * *",
                                                         "deduplicationKey": "chaos"})
        conn = await asyncpg.connect(chaos.local.database_url)
        await conn.execute("UPDATE schedules SET next_run_at = date_trunc('minute', now()) WHERE id = $1",
                           schedule["id"])
        await conn.close()  # Postgres is killed below: the checks connect again after the load
        done = asyncio.Event()
        producing = asyncio.create_task(produce(load, done))
        started = time.monotonic()
        passes = 0
        while not done.is_set() or passes == 0:  # every fault at least once, and on while the load goes on
            random.Random(passes).shuffle(faults)
            for what in faults:
                began = time.monotonic()
                await fault(chaos, what)
                recovered.append({"fault": what, "at_s": round(began - started, 1),
                                  "recovered_s": round(time.monotonic() - began + await recovery(load), 2)})
            passes += 1
        await producing
        # Every acknowledged run ends, as expected, once the faults stop.
        acknowledged = list(load.expected)
        conn = await asyncpg.connect(chaos.local.database_url)

        async def all_final() -> bool:
            rows = await conn.fetch("SELECT status FROM runs WHERE id = ANY($1)", acknowledged)
            return len(rows) == len(acknowledged) and all(r["status"] in FINAL for r in rows)

        drain_started = time.monotonic()
        try:
            await eventually(all_final, timeout=240, interval=1, message="every acknowledged run final")
        except AssertionError:
            stuck = await conn.fetch("SELECT id, task_identifier, status FROM runs WHERE id = ANY($1)"
                                     " AND NOT status = ANY($2)", acknowledged, list(FINAL))
            raise AssertionError(f"{len(stuck)} runs stuck: {[tuple(r) for r in stuck[:20]]}") from None
        drain_s = time.monotonic() - drain_started
        scheduled = await conn.fetch("SELECT id, status FROM runs WHERE schedule_id = $1", schedule["id"])

        async def scheduled_final() -> bool:
            rows = await conn.fetch("SELECT status FROM runs WHERE schedule_id = $1", schedule["id"])
            return bool(rows) and all(r["status"] == "COMPLETED" for r in rows)

        await eventually(scheduled_final, timeout=90, interval=1, message="the schedule's runs completed")

    rows = {r["id"]: r for r in await conn.fetch("SELECT id, status, output FROM runs WHERE id = ANY($1)",
                                                acknowledged)}
    lost = [run_id for run_id in acknowledged if run_id not in rows]
    wrong = [(run_id, rows[run_id]["status"], want) for run_id, want in load.expected.items()
             if run_id in rows and (rows[run_id]["status"], None if want[1] is None else
                                    json.loads(rows[run_id]["output"] or "null")) != want]
    completed_twice = await conn.fetch(
        "SELECT run_id FROM attempts WHERE run_id = ANY($1) AND status = 'COMPLETED'"
        " GROUP BY run_id HAVING count(*) > 1", acknowledged)
    # Two final states: a completion recorded against a run that ended otherwise, or none behind a COMPLETED.
    two_finals = await conn.fetch(
        "SELECT r.id FROM runs r WHERE r.id = ANY($1) AND ("
        " (r.status <> 'COMPLETED' AND EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = r.id"
        "   AND a.status = 'COMPLETED'))"
        " OR (r.status = 'COMPLETED' AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = r.id"
        "   AND a.status = 'COMPLETED')))", acknowledged)
    children = {r["parent_run_id"]: r["n"] for r in await conn.fetch(
        "SELECT parent_run_id, count(*) AS n FROM runs WHERE parent_run_id = ANY($1) GROUP BY 1", load.parents)}
    every_run = await conn.fetchval("SELECT count(*) FROM runs")  # children and scheduled runs too
    await conn.close()
    executions = [json.loads(line) for line in chaos.record.read_text().splitlines() if line.strip()]
    keyed = [(e["start"], e["end"], (e["run"], e["attempt"])) for e in executions if e["task"] == "chaos-keyed"]
    per_key: dict[str, list[tuple[int, int, Any]]] = defaultdict(list)
    for e in executions:
        if e["task"] == "chaos-keyed":
            per_key[e["key"]].append((e["start"], e["end"], (e["run"], e["attempt"])))
    most_in_queue = most_at_once(keyed)[0]
    most_per_key = max((most_at_once(intervals)[0] for intervals in per_key.values()), default=0)

    report = {
        "runs": len(acknowledged), "all_runs": every_run, "load_seconds": LOAD_SECONDS, "passes": passes,
        "faults": recovered,
        "lost": len(lost), "stuck": 0, "wrong_final": len(wrong), "completed_twice": len(completed_twice),
        "two_final_states": len(two_finals), "most_in_queue": most_in_queue, "most_per_key": most_per_key,
        "parents": len(load.parents), "scheduled_runs": len(scheduled), "drain_seconds": round(drain_s, 1),
    }
    (tmp_path / "chaos-report.json").write_text(json.dumps(report, indent=2))
    print("\nchaos report:", json.dumps(report, indent=2))
    assert lost == [], f"acknowledged triggers lost: {lost[:20]}"
    assert wrong == [], f"runs that ended otherwise than expected: {wrong[:20]}"
    assert completed_twice == [] and two_finals == []
    assert all(a == b for a, b in load.cached), "an idempotency key made a second run"
    assert all(children.get(p) == 3 for p in load.parents), "a parent made a child twice (or none)"
    assert most_in_queue <= 2 and most_per_key <= 1, (most_in_queue, most_per_key)
    assert {f["fault"] for f in recovered} >= set(faults)
