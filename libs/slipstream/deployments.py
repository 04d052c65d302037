"""Versions and deploys: `await deployments.list()`, `retrieve(version)`, `promote(version)`, and
`deploy(module)` (what `slipstream deploy` calls).

A worker registers its tasks under a version (`slipstream worker --version`, by default a hash
of its task module's source). Promoting a version makes it the environment's current one: new
runs go only to its workers; a run that started keeps going to workers of its version while one
runs (retries, resumes); workers of other versions drain. DEVELOPMENT has no deploys: every
running dev worker is current.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import msgspec
from slipstream_core.versions import code_version
from slipstream_proto import Deployment, DeploymentList

from slipstream import _client

__all__ = ["create", "deploy", "list", "promote", "retrieve"]

_list = list


async def list() -> _list[Deployment]:  # noqa: A001 - as runs.list
    """The environment's versions, newest registration first: CURRENT, DRAINING or INACTIVE."""
    return (await _client.request("GET", "/api/v1/deployments", DeploymentList)).data


async def retrieve(version: str) -> Deployment:
    """One version, with its live workers and the unfinished runs locked to it."""
    return await _client.request("GET", f"/api/v1/deployments/{quote(version, safe='')}", Deployment)


async def promote(version: str) -> Deployment:
    """Make a registered version current."""
    return await _client.request("POST", f"/api/v1/deployments/{quote(version, safe='')}/promote", Deployment)


async def create(version: str, *, tasks: Sequence[Any] = (), queues: Sequence[Any] = (),
                 promote: bool = False) -> Deployment:
    """Register a version's task catalog (task and queue definitions as a worker registers them)."""
    body = {"version": version, "tasks": msgspec.to_builtins(_list(tasks)),
            "queues": msgspec.to_builtins(_list(queues)), "promote": promote}
    return await _client.request("POST", "/api/v1/deployments", Deployment, body)


async def deploy(module: str, version: str | None = None) -> Deployment:
    """Register the tasks of `module` (imported here, as a worker imports it) under `version` (by
    default the hash a worker of this code registers under) and make it current."""
    from slipstream._runtime import load_tasks
    from slipstream._task import queues

    found = load_tasks(module)
    return await create(version or code_version(module), tasks=[t.definition() for t in found.values()],
                        queues=[q.definition() for q in queues.values()], promote=True)
