"""Tasks of the large-payload benchmark (bench/payloads.py)."""

from __future__ import annotations

import time
from typing import Any

from slipstream import TaskContext, task


@task(id="payload-stamp")
async def payload_stamp(payload: dict[str, Any], ctx: TaskContext) -> Any:
    """The time the function was entered; with `echo`, the payload back as the output."""
    entered = time.time()
    if payload.get("echo"):
        return {"entered": entered, "blob": payload["blob"]}
    return {"entered": entered, "size": len(payload["blob"])}
