"""Tasks with large payloads and outputs (over 512 KB: kept in the payload store)."""

from __future__ import annotations

import hashlib
from typing import Any

from slipstream import TaskContext, task


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@task(id="big-echo")
async def big_echo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Answers with a digest of the blob and, if asked, an output of `out` bytes."""
    return {"digest": digest(payload.get("blob", "")), "size": len(payload.get("blob", "")),
            "out": "y" * payload.get("out", 0)}


@task(id="big-parent")
async def big_parent(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Gives its children large payloads and gets large outputs back, one and in a batch."""
    blob = "z" * payload["size"]
    one = (await big_echo.trigger_and_wait({"blob": blob, "out": payload["size"]})).unwrap()
    many = await big_echo.batch_trigger_and_wait([{"payload": {"blob": blob, "out": payload["size"]}},
                                                   {"payload": {"blob": "small"}}])
    return {"one": [one["digest"], len(one["out"])],
            "many": [[r.output["digest"], len(r.output["out"])] for r in many.runs],
            "expected": digest(blob)}


@task(id="too-big-output", retry={"max_attempts": 3})
async def too_big_output(payload: dict[str, Any], ctx: TaskContext) -> str:
    return "x" * (100 * 1024 * 1024 + 1)
