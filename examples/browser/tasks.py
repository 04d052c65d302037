"""The task the browser example triggers: it reports its progress as metadata."""

from __future__ import annotations

import asyncio
from typing import Any

from slipstream import TaskContext, metadata, task


@task(id="browser-progress")
async def browser_progress(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    steps = max(1, min(int(payload.get("steps", 5)), 20))
    pause = max(0.0, min(float(payload.get("pause", 0.4)), 5.0))
    for i in range(steps):
        metadata.set("progress", i / steps)
        metadata.set("step", f"step {i + 1} of {steps}")
        await metadata.flush()
        await asyncio.sleep(pause)
    metadata.set("progress", 1.0)
    return {"steps": steps, "greeting": f"Hello {payload.get('name', 'browser')}"}
