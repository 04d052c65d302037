"""Lifecycle hooks: per task (options of `@task`) and global (`tasks.on_success(fn)`, ...).

Hooks are called with keyword arguments; a hook declares only the ones it wants
(`def on_failure(payload, error, ctx)`) or takes `**kwargs` for all of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

HOOK_NAMES = (
    "on_start_attempt",
    "on_start",
    "on_success",
    "on_failure",
    "on_complete",
    "on_cancel",
    "on_wait",
    "on_resume",
    "catch_error",
    "middleware",
    "init",
    "cleanup",
)

# Global hooks in registration order; middleware entries are (name, fn).
global_hooks: dict[str, list[Any]] = {name: [] for name in HOOK_NAMES}


async def call_hook(fn: Callable[..., Any], **available: Any) -> Any:
    """Call a sync or async hook with the keyword arguments it declares."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = available
    else:
        kwargs = {name: value for name, value in available.items() if name in params}
    # A worker process runs one attempt at a time, so a plain function may block it.
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def _register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"tasks.{name}() takes a function, not {fn!r}")
        global_hooks[name].append(fn)
        return fn

    register.__name__ = name
    register.__doc__ = f"Register a global `{name}` hook for every task (usable as a decorator)."
    return register


on_start_attempt = _register("on_start_attempt")
on_start = _register("on_start")
on_success = _register("on_success")
on_failure = _register("on_failure")
on_complete = _register("on_complete")
on_cancel = _register("on_cancel")
on_wait = _register("on_wait")
on_resume = _register("on_resume")
catch_error = _register("catch_error")
init = _register("init")
cleanup = _register("cleanup")


def middleware(name: str, fn: Callable[..., Any] | None = None) -> Any:
    """Register a named global middleware: `tasks.middleware("db", fn)` or as a decorator."""
    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        global_hooks["middleware"] = [(n, f) for n, f in global_hooks["middleware"] if n != name]
        global_hooks["middleware"].append((name, function))
        return function

    return register(fn) if fn is not None else register
