"""`slipstream.idempotency_keys`, not awaited."""

from __future__ import annotations

from typing import Literal

from slipstream import idempotency_keys as _keys
from slipstream._bridge import bridge

__all__ = ["create", "reset"]


def create(key: str | list[str], *, scope: Literal["run", "attempt", "global"] = "run") -> str:
    """An idempotency key (scoped to the current run or attempt inside a task)."""
    return bridge.call(_keys.create, key, scope=scope)


def reset(key: str, task_identifier: str) -> None:
    """Let the key trigger a new run of the task."""
    bridge.call(_keys.reset, key, task_identifier)
