"""`slipstream.regions`, not awaited."""

from __future__ import annotations

from slipstream_proto import EnvironmentLimits, Region

from slipstream import regions as _regions
from slipstream._bridge import bridge

__all__ = ["list", "set_default"]
_list = list


def list() -> _list[Region]:  # noqa: A001 - as queues.list
    """The environment's regions, the default first, with their live workers."""
    return bridge.call(_regions.list)


def set_default(name: str) -> EnvironmentLimits:
    """Make `name` the region of runs triggered without one (and of workers started without one)."""
    return bridge.call(_regions.set_default, name)
