"""Queues at run time: `await queues.list()`, `pause(name)`, `resume(name)`, and the
environment's limits (`limits()`, `set_limits(concurrency_limit=..., burst_factor=...)`)."""

from __future__ import annotations

from urllib.parse import quote

from slipstream_proto import EnvironmentLimits, QueueList, QueueState

from slipstream import _client

__all__ = ["limits", "list", "pause", "resume", "set_limits"]

_list = list


async def list() -> _list[QueueState]:  # noqa: A001 - the seed's name
    """Every queue of the environment: limit, paused, and runs queued and running (per key)."""
    return (await _client.request("GET", "/api/v1/queues", QueueList)).data


async def pause(name: str) -> None:
    """Hold the queue's runs QUEUED until it is resumed (running ones finish)."""
    await _client.request("POST", f"/api/v1/queues/{quote(name, safe='/')}/pause", dict)


async def resume(name: str) -> None:
    """Let a paused queue's runs start again."""
    await _client.request("POST", f"/api/v1/queues/{quote(name, safe='/')}/resume", dict)


async def limits() -> EnvironmentLimits:
    """The environment's concurrency limit and burst factor."""
    return await _client.request("GET", "/api/v1/environment", EnvironmentLimits)


async def set_limits(*, concurrency_limit: int | None = None, burst_factor: float | None = None) -> EnvironmentLimits:
    """Change the environment's limits; the next dispatch uses them, no restart needed."""
    body = {"concurrencyLimit": concurrency_limit, "burstFactor": burst_factor}
    return await _client.request("PATCH", "/api/v1/environment", EnvironmentLimits, body)
