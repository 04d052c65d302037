"""Tasks that report progress as metadata (slipstream.metadata)."""

from __future__ import annotations

from typing import Any

from slipstream import TaskContext, metadata, task, wait
from slipstream.errors import MetadataTooLargeError


@task(id="progress")
async def progress(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    metadata.set("progress", 0.0)
    for i in range(3):
        metadata.append("steps", f"step-{i}")
        metadata.increment("count")
    metadata.set("$.nested.done", True)
    metadata.remove("steps", "step-1")
    metadata.decrement("count", 0.5)
    try:
        metadata.set("big", "x" * 300_000)
        too_large = False
    except MetadataTooLargeError:
        too_large = True
    await metadata.flush()
    metadata.set("progress", 1.0)  # sent when the attempt ends
    return {"seen": metadata.current(), "initial": ctx.run.metadata, "too_large": too_large,
            "nested": metadata.get("$.nested.done")}


@task(id="progress-child")
async def progress_child(payload: dict[str, Any], ctx: TaskContext) -> int:
    metadata.parent.increment("done")
    metadata.root.append("children", payload["i"])
    return int(payload["i"])


@task(id="progress-parent")
async def progress_parent(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    metadata.set("stage", "fan-out")
    await progress_child.batch_trigger_and_wait([{"payload": {"i": i}} for i in range(payload["n"])])
    # Resumed: this attempt starts from the metadata the children left.
    return {"done": metadata.get("done"), "children": sorted(metadata.get("children", [])),
            "stage": metadata.get("stage")}


@task(id="progress-waits")
async def progress_waits(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    metadata.increment("before")
    metadata.parent.increment("parent_before")  # a root run: its own
    await wait.for_(seconds=0.2)
    # Replayed after the wait: the increments above are not sent a second time.
    metadata.increment("after")
    return metadata.current()


@task(id="progress-sync")
def progress_sync(payload: dict[str, Any], ctx: TaskContext) -> int:
    for _ in range(payload["n"]):
        metadata.increment("n")  # from the task's thread; 1,500 of them: two requests
    metadata.set("done", True)
    try:
        metadata.increment("n", float("inf"))
    except Exception as exc:
        metadata.set("refused", type(exc).__name__)
    return int(metadata.get("n"))
