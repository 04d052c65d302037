"""Versions and deploys with two supervisors of two versions: new runs go to the current
version, started runs back to theirs while one of its workers runs, old workers drain."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import slipstream
from slipstream import deployments, runs, tasks
from slipstream.errors import UnprocessableEntityError

from tests.conftest import eventually
from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e

MODULE = "tests.e2e.version_tasks"


class Staging:
    def __init__(self, platform: Platform, key: str) -> None:
        self.platform = platform
        self.key = key
        self.started: set[str] = set()

    async def start_worker(self, version: str, region: str = "") -> None:
        local = self.platform.local
        local.start_service("supervisor", {"SLIPSTREAM_TASKS": MODULE, "SLIPSTREAM_SECRET_KEY": self.key,
                                           "SLIPSTREAM_CONCURRENCY": "2", "SLIPSTREAM_VERSION": version,
                                           "SLIPSTREAM_REGION": region},
                            key=f"supervisor-{version}")
        self.started.add(version)
        await asyncio.to_thread(local.wait_healthy, [f"supervisor-{version}"])

    async def stop_worker(self, version: str) -> None:
        await asyncio.to_thread(self.platform.local.stop_service, f"supervisor-{version}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SLIPSTREAM_API_URL": self.platform.api_url, "SLIPSTREAM_SECRET_KEY": self.key}
        return subprocess.run([sys.executable, "-m", "slipstream_cli.main", *args], capture_output=True,
                              text=True, env=env, timeout=60, check=False)


@pytest.fixture
async def staging(platform: Platform) -> AsyncIterator[Staging]:
    """The STAGING environment of a project of its own (its deploys touch no other test)."""
    keys = await asyncio.to_thread(platform.local.bootstrap, f"deploys-{uuid.uuid4().hex[:6]}")
    slipstream.configure(api_url=platform.api_url, secret_key=keys["STAGING"], realtime_url=platform.realtime_url)
    here = Staging(platform, keys["STAGING"])
    try:
        yield here
    finally:
        for version in sorted(here.started):
            await here.stop_worker(version)
        import slipstream._config as config

        config._override = None


async def finished(run_id: str) -> Any:
    run = await runs.retrieve(run_id)
    return run if run.is_completed else None


async def versions_of(run_ids: list[str]) -> list[str | None]:
    done = [await eventually(lambda r=r: finished(r), message=f"run {r} finished") for r in run_ids]
    assert all(run.status == "COMPLETED" for run in done)
    return [run.version for run in done]


async def child_of(tag: str) -> str:
    async def delayed() -> str | None:
        page = await runs.list(tag=tag, status="DELAYED")
        return page.data[0].id if page.data else None

    return await eventually(delayed, message=f"the child tagged {tag} is DELAYED")


async def status_of(version: str) -> tuple[str, int, int]:
    found = await deployments.retrieve(version)
    return found.status, found.unfinished_runs, found.live_workers


async def test_deploy_drain_and_version_locks_with_two_workers(staging: Staging) -> None:
    await staging.start_worker("v1")
    made = await deployments.promote("v1")
    assert (made.version, made.status, made.tasks) == ("v1", "CURRENT", ["version-echo", "version-parent"])
    await staging.start_worker("v2")  # registered, not current: it takes nothing yet
    assert await status_of("v2") == ("INACTIVE", 0, 1)
    # Two parents start on v1 and wait for delayed children, locked to v1.
    tags = [f"child-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    parents = [(await tasks.trigger("version-parent", {"tag": tag})).id for tag in tags]
    children = [await child_of(tag) for tag in tags]
    echoes = [(await tasks.trigger("version-echo", {"n": i})).id for i in range(6)]
    assert await versions_of(echoes) == ["v1"] * 6

    # The deploy: new runs go to v2 only; v1 drains with its two waiting parents.
    promoted = staging.cli("deploy", "--version", "v2", "--json")
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["status"] == "CURRENT"
    echoes = [(await tasks.trigger("version-echo", {"n": i})).id for i in range(6)]
    assert await versions_of(echoes) == ["v2"] * 6
    assert await status_of("v1") == ("DRAINING", 2, 1)
    listed = json.loads(staging.cli("deployments", "--json").stdout)["data"]
    assert {d["version"]: d["status"] for d in listed} == {"v1": "DRAINING", "v2": "CURRENT"}

    # The first child runs on v2 (a new run); its parent resumes on v1, the version it started on.
    await runs.reschedule(children[0], delay="1s")
    first = await eventually(lambda: finished(parents[0]), message="the first parent finished")
    assert (first.status, first.version, first.output) == ("COMPLETED", "v1", {"tag": tags[0]})
    assert (await runs.retrieve(children[0])).version == "v2"
    assert await status_of("v1") == ("DRAINING", 1, 1)

    # v1's last worker stops: the second parent's lock is released, and it resumes on v2.
    await staging.stop_worker("v1")
    await runs.reschedule(children[1], delay="1s")
    second = await eventually(lambda: finished(parents[1]), message="the second parent finished")
    assert (second.status, second.version) == ("COMPLETED", "v2")
    assert await status_of("v1") == ("INACTIVE", 0, 0)

    # lockToVersion asks for v1 strictly: it waits for a v1 worker; an unknown version is refused.
    with pytest.raises(UnprocessableEntityError, match="known: v2, v1|known: v1, v2"):
        await tasks.trigger("version-echo", {}, lock_to_version="v9")
    locked = await tasks.trigger("version-echo", {"locked": True}, lock_to_version="v1")
    assert (await runs.retrieve(locked.id)).status == "PENDING_VERSION"
    await staging.start_worker("v1")
    assert await versions_of([locked.id]) == ["v1"]
    # The old worker came back: still not current.
    assert await versions_of([(await tasks.trigger("version-echo", {})).id]) == ["v2"]


async def test_deploy_registers_a_module_and_development_has_no_deploys(staging: Staging, platform: Platform) -> None:
    from slipstream_core.versions import code_version

    done = staging.cli("deploy", MODULE, "--json")
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["version"] == code_version(MODULE) and made["status"] == "CURRENT" and made["liveWorkers"] == 0
    # No worker of that version yet: new runs wait for one.
    handle = await tasks.trigger("version-echo", {})
    assert (await runs.retrieve(handle.id)).status == "PENDING_VERSION"
    bad = staging.cli("deploy", "--version", "not a version")
    assert bad.returncode == 1 and bad.stderr.startswith("slipstream: ") and "Traceback" not in bad.stderr
    env = {**os.environ, "SLIPSTREAM_API_URL": platform.api_url, "SLIPSTREAM_SECRET_KEY": platform.key}
    dev = subprocess.run([sys.executable, "-m", "slipstream_cli.main", "deploy", "--version", "v1"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert dev.returncode == 1 and "DEVELOPMENT has no deployments" in dev.stderr


async def test_regions_route_runs_to_their_workers(staging: Staging) -> None:
    await staging.start_worker("home")  # the environment's default region
    await staging.start_worker("eu", region="eu-1")
    eu = [(await tasks.trigger("version-echo", {"n": i}, region="eu-1")).id for i in range(4)]
    home = [(await tasks.trigger("version-echo", {"n": i})).id for i in range(4)]
    assert await versions_of(eu) == ["eu"] * 4  # each supervisor has its own version: it says who ran it
    assert await versions_of(home) == ["home"] * 4
    with pytest.raises(UnprocessableEntityError, match="region 'mars' is not a region .* known: default, eu-1"):
        await tasks.trigger("version-echo", {}, region="mars")
    listed = json.loads(staging.cli("regions", "--json").stdout)["data"]
    assert [(r["name"], r["isDefault"], r["liveWorkers"]) for r in listed] == [("default", True, 1), ("eu-1", False, 1)]
    # No live worker in the region: its runs wait, then go to the region's next worker.
    await staging.stop_worker("eu")
    waiting = await tasks.trigger("version-echo", {}, region="eu-1")
    assert (await runs.retrieve(waiting.id)).status == "PENDING_VERSION"
    await staging.start_worker("eu2", region="eu-1")
    assert await versions_of([waiting.id]) == ["eu2"]
