"""`slipstream.deployments`, not awaited."""

from __future__ import annotations

from slipstream_proto import Deployment

from slipstream import deployments as _deployments
from slipstream._bridge import bridge

__all__ = ["deploy", "list", "promote", "retrieve"]
_list = list


def list() -> _list[Deployment]:  # noqa: A001 - as runs.list
    """The environment's versions, newest registration first: CURRENT, DRAINING or INACTIVE."""
    return bridge.call(_deployments.list)


def retrieve(version: str) -> Deployment:
    """One version, with its live workers and the unfinished runs locked to it."""
    return bridge.call(_deployments.retrieve, version)


def promote(version: str) -> Deployment:
    """Make a registered version current."""
    return bridge.call(_deployments.promote, version)


def deploy(module: str, version: str | None = None) -> Deployment:
    """Register the tasks of `module` under `version` (default: its code's hash) and make it current."""
    return bridge.call(_deployments.deploy, module, version)
