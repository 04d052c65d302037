"""Loaded before the tasks: global hooks for every task in the package."""

from __future__ import annotations

from typing import Any

from slipstream import logger, tasks


@tasks.on_start_attempt
def global_on_start_attempt(ctx: Any) -> None:
    logger.info("global on_start_attempt", attempt=ctx.run.attempt.number)


@tasks.on_success
async def global_on_success(task: str) -> None:
    logger.info("global on_success", task=task)


async def outer(next: Any, ctx: Any) -> None:
    logger.info("global middleware before")
    await next()
    logger.info("global middleware after")


tasks.middleware("outer", outer)
