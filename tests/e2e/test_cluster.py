"""The platform on a 3-node NATS cluster (JetStream, every stream replicated 3 times), with two
supervisors: runs complete and cancels end runs while the leader of the dispatch stream is
killed, then a follower, and both come back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import nats
import pytest
from slipstream_platform.local import LocalPlatform
from slipstream_platform.packets import BUCKET
from slipstream_proto.events import DISPATCH_STREAM

from tests.conftest import eventually
from tests.e2e.conftest import FAST_SWEEPS
from tests.e2e.test_crash_recovery import supervisor_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, str]]:
    folder = tmp_path_factory.mktemp("cluster")
    folder.chmod(0o755)
    local = LocalPlatform(folder, fast_unsafe=True, service_env=FAST_SWEEPS, cluster=3)
    try:
        local.start_servers()
        key = local.bootstrap("cluster")["DEVELOPMENT"]
        local.start_services(None, key)
        local.start_service("supervisor", supervisor_env(key), key="supervisor-a")
        local.start_service("supervisor", supervisor_env(key), key="supervisor-b")
        local.wait_healthy()
        yield local, key
    finally:
        local.stop()


@pytest.fixture
async def api(cluster: tuple[LocalPlatform, str]) -> AsyncIterator[aiohttp.ClientSession]:
    local, key = cluster
    async with aiohttp.ClientSession(base_url=local.api_url, headers={"Authorization": f"Bearer {key}"}) as http:
        yield http


async def trigger(http: aiohttp.ClientSession, task: str, payload: Any) -> str:
    async with http.post(f"/api/v1/tasks/{task}/trigger", json={"payload": payload}) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["id"])


async def statuses(http: aiohttp.ClientSession, run_ids: list[str]) -> dict[str, str]:
    found = {}
    for run_id in run_ids:
        async with http.get(f"/api/v3/runs/{run_id}") as response:
            found[run_id] = (await response.json())["status"]
    return found


async def all_completed(http: aiohttp.ClientSession, run_ids: list[str], timeout: float = 60) -> None:
    async def done() -> bool:
        return set((await statuses(http, run_ids)).values()) == {"COMPLETED"}

    await eventually(done, timeout=timeout, interval=0.3, message="runs completed on the cluster")


async def stream_cluster(local: LocalPlatform) -> Any:
    """The dispatch stream's info; None while the cluster cannot answer (an election)."""
    nc = await nats.connect(local.nats.url.split(","), connect_timeout=5)
    try:
        return await asyncio.wait_for(nc.jetstream().stream_info(DISPATCH_STREAM.name), 3)
    except (nats.errors.Error, TimeoutError):
        return None
    finally:
        await nc.close()


async def test_streams_and_consumers_are_replicated_on_three_nodes(cluster: tuple[LocalPlatform, str]) -> None:
    local, _ = cluster
    info = await eventually(lambda: stream_cluster(local), message="the dispatch stream's info")
    assert info.config.num_replicas == 3
    assert info.cluster is not None and info.cluster.leader is not None and len(info.cluster.replicas or []) == 2
    nc = await nats.connect(local.nats.url.split(","), connect_timeout=5)
    try:
        js = nc.jetstream()
        # Each supervisor's durable consumer of the dispatch stream has three copies too.
        consumers = await js.consumers_info(DISPATCH_STREAM.name)
        assert len(consumers) == 2
        assert all(c.cluster is not None and len(c.cluster.replicas or []) == 2 for c in consumers)
        # And so has the payload store.
        packets = await js.stream_info(f"OBJ_{BUCKET}")
        assert packets.config.num_replicas == 3
    finally:
        await nc.close()


async def test_runs_and_cancels_go_on_while_the_stream_leader_and_a_follower_die(
    cluster: tuple[LocalPlatform, str], api: aiohttp.ClientSession
) -> None:
    local, _ = cluster
    nodes = local.nats
    assert hasattr(nodes, "node_of")
    before = [await trigger(api, "echo", {"n": n}) for n in range(20)]
    await all_completed(api, before)

    leader = nodes.node_of((await eventually(lambda: stream_cluster(local))).cluster.leader)
    nodes.kill(leader)
    # The API keeps taking triggers (Postgres is the truth) and the supervisors keep running them.
    during = [await trigger(api, "echo", {"n": n}) for n in range(20)]
    # A cancel ends the run in Postgres and tells its worker on the dispatch stream.
    long = await trigger(api, "sleepy", {"seconds": 120})

    async def executing() -> bool:
        return (await statuses(api, [long]))[long] == "EXECUTING"

    await eventually(executing, timeout=30, interval=0.2, message="the long run started")
    async with api.post(f"/api/v2/runs/{long}/cancel") as response:
        assert response.status == 200
    await all_completed(api, during)

    async def new_leader() -> bool:
        info = await stream_cluster(local)
        return info is not None and info.cluster.leader not in (None, nodes.name(leader))

    await eventually(new_leader, timeout=30, interval=0.3, message="a new leader of the dispatch stream")

    # A follower dies too while the old leader is still down: 1 of 3 left has no quorum, so bring
    # the old leader back first, then kill a follower.
    nodes.start_node(leader)
    info = await eventually(lambda: stream_cluster(local), message="the dispatch stream's info")
    follower = next(nodes.node_of(r.name) for r in info.cluster.replicas or [])
    nodes.kill(follower)
    after = [await trigger(api, "echo", {"n": n}) for n in range(20)]
    await all_completed(api, after)
    nodes.start_node(follower)

    async def all_current() -> bool:
        info = await stream_cluster(local)
        replicas = (info.cluster.replicas or []) if info is not None and info.cluster else []
        return len(replicas) == 2 and all(r.current for r in replicas)

    await eventually(all_current, timeout=60, interval=0.5, message="the stream back to 3 current copies")
    assert (await statuses(api, [long]))[long] == "CANCELED"
