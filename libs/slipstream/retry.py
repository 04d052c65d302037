"""Retrying a block of code inside a task: `await retry.on_throw(fn, max_attempts=3)`."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from slipstream._logger import logger
from slipstream._retry import RetryOptions, retry_delay_ms, validate_retry
from slipstream.errors import AbortTaskRunError

__all__ = ["on_throw"]

T = TypeVar("T")


async def on_throw(fn: Callable[..., Any], **options: Any) -> Any:
    """Call `fn` (sync or async; it may take `attempt`) until it returns, retrying on errors.

    Options are the task's retry options (`max_attempts`, `factor`, `min_timeout_ms`,
    `max_timeout_ms`, `randomize`); the last error is raised when attempts run out.
    """
    settings: RetryOptions = validate_retry("retry.on_throw", options)
    wants_attempt = "attempt" in inspect.signature(fn).parameters
    for attempt in range(1, settings["max_attempts"] + 1):
        try:
            result = fn(attempt=attempt) if wants_attempt else fn()
            if inspect.isawaitable(result):
                result = await result
            return result
        except Exception as exc:
            if attempt == settings["max_attempts"] or isinstance(exc, AbortTaskRunError):
                raise
            delay = retry_delay_ms(settings, attempt)
            logger.warn("retry.on_throw: attempt failed, retrying", attempt=attempt, delay_ms=delay,
                        error=repr(exc))
            await asyncio.sleep(delay / 1000)
    raise AssertionError("unreachable")
