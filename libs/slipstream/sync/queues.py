"""`slipstream.queues`, not awaited."""

from __future__ import annotations

from slipstream_proto import EnvironmentLimits, QueueState

from slipstream import queues as _queues
from slipstream._bridge import bridge

__all__ = ["limits", "list", "pause", "resume", "set_limits"]
_list = list


def list() -> _list[QueueState]:  # noqa: A001 - the seed's name
    """Every queue of the environment with its limits, running and queued."""
    return bridge.call(_queues.list)


def pause(name: str) -> None:
    """Stop starting runs of the queue (running ones go on)."""
    bridge.call(_queues.pause, name)


def resume(name: str) -> None:
    """Start runs of a paused queue again."""
    bridge.call(_queues.resume, name)


def limits() -> EnvironmentLimits:
    """The environment's concurrency limit and burst factor."""
    return bridge.call(_queues.limits)


def set_limits(*, concurrency_limit: int | None = None, burst_factor: float | None = None) -> EnvironmentLimits:
    """Change the environment's limits (None keeps a value)."""
    return bridge.call(_queues.set_limits, concurrency_limit=concurrency_limit, burst_factor=burst_factor)
