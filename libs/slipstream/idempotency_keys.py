"""Idempotency keys: `await idempotency_keys.create("charge", scope="run")`.

A key passed as `idempotency_key=` makes a trigger return the existing run while the key
is live (30 days by default) and that run has not failed. Keys made here are hashed with
their scope: "run" (the default inside a task: retries of the run reuse the same children),
"attempt" (each attempt gets its own), or "global" (the same everywhere).
"""

from __future__ import annotations

import hashlib
from typing import Literal
from urllib.parse import quote

from slipstream import _client
from slipstream._task import current_attempt_number, current_run_id

__all__ = ["create", "reset"]


async def create(key: str | list[str], *, scope: Literal["run", "attempt", "global"] = "run") -> str:
    """The key to pass as `idempotency_key=`: `key` (or the joined parts) hashed with its scope.

    Outside a task every scope is global.
    """
    parts = [key] if isinstance(key, str) else list(key)
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise ValueError("an idempotency key is a non-empty string or a list of them")
    run_id = current_run_id.get()
    prefix: list[str] = []
    if scope not in ("run", "attempt", "global"):
        raise ValueError(f"scope must be 'run', 'attempt' or 'global', not {scope!r}")
    if run_id is not None and scope in ("run", "attempt"):
        prefix.append(run_id)
        if scope == "attempt":
            prefix.append(str(current_attempt_number.get()))
    return hashlib.sha256("-".join(prefix + parts).encode()).hexdigest()


async def reset(key: str, task_identifier: str) -> None:
    """Forget a key of a task, so the next trigger with it starts a new run."""
    await _client.request(
        "POST", f"/api/v1/idempotencyKeys/{quote(key, safe='')}/reset", dict,
        {"taskIdentifier": task_identifier},
    )
