"""Regions: `await regions.list()` and `regions.set_default(name)`.

A supervisor started with `slipstream worker --region eu-1` takes only runs of that region; a run
triggered with `region="eu-1"` goes only to such supervisors. Runs triggered without a region,
and supervisors started without one, are in the environment's default region.
"""

from __future__ import annotations

from slipstream_proto import EnvironmentLimits, Region, RegionList

from slipstream import _client

__all__ = ["list", "set_default"]

_list = list


async def list() -> _list[Region]:  # noqa: A001 - as queues.list
    """The environment's regions, the default first, with their live workers."""
    return (await _client.request("GET", "/api/v1/regions", RegionList)).data


async def set_default(name: str) -> EnvironmentLimits:
    """Make `name` the region of runs triggered without one (and of workers started without one)."""
    return await _client.request("PATCH", "/api/v1/environment", EnvironmentLimits, {"defaultRegion": name})
