"""Inside a worker process: import the tasks, then run one attempt at a time.

The supervisor starts this process, keeps it warm, and sends it `Execute` messages over a
socket; task code runs here so that a crash or hang in it never takes the supervisor down.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pkgutil
import socket
import sys
import traceback
from datetime import datetime
from typing import Any

import msgspec
from slipstream_platform import ipc

from slipstream import _client
from slipstream._context import AttemptInfo, EnvironmentInfo, RunInfo, TaskContext, TaskInfo
from slipstream._retry import retry_delay_ms
from slipstream._task import Task, registry

_encoder = msgspec.json.Encoder()


def load_tasks(module_name: str) -> dict[str, Task[Any, Any]]:
    """Import a module, and every submodule if it is a package; return the tasks defined."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    if hasattr(module, "__path__"):
        # init.py at the package root is loaded first (global set-up lives there).
        init_name = f"{module_name}.init"
        if importlib.util.find_spec(init_name) is not None:
            importlib.import_module(init_name)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{module_name}."):
            importlib.import_module(info.name)
    return dict(registry)


def _error_json(name: str, message: str, stack: str | None) -> str:
    return _encoder.encode({"name": name, "message": message, "stackTrace": stack}).decode()


async def execute(message: ipc.Execute) -> ipc.Outcome:
    """Run one attempt and report how it ended."""
    def failed(name: str, text: str, stack: str | None, retry: int | None) -> ipc.Outcome:
        return ipc.Outcome(
            run_id=message.run_id, attempt_number=message.attempt_number, ok=False,
            error_json=_error_json(name, text, stack), retry_delay_ms=retry,
        )

    task = registry.get(message.task_id)
    if task is None:
        return failed("TaskNotFoundError",
                      f"task {message.task_id!r} is not defined in this worker's module", None, None)
    payload = msgspec.json.decode(message.payload_json) if message.payload_json else None
    ctx = TaskContext(
        run=RunInfo(
            id=message.run_id,
            attempt=AttemptInfo(id=message.attempt_id, number=message.attempt_number),
            created_at=datetime.fromisoformat(message.created_at),
            tags=message.tags,
            max_attempts=message.max_attempts,
        ),
        task=TaskInfo(id=task.id),
        environment=EnvironmentInfo(id=message.environment_id, type=message.environment_type),
    )
    try:
        if task.is_async:
            result = await task.fn(payload, ctx)
        else:
            result = await asyncio.to_thread(task.fn, payload, ctx)
    except Exception as exc:
        retry = None
        if message.attempt_number < message.max_attempts:
            retry = retry_delay_ms(task.retry, message.attempt_number)
        return failed(type(exc).__name__, str(exc) or repr(exc), traceback.format_exc(), retry)
    try:
        output = _encoder.encode(result).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        return failed(
            "OutputNotSerializableError",
            f"task {task.id!r} returned a {type(result).__name__}, which is not JSON-serializable"
            f" ({exc}); return dicts, lists, strings, numbers, booleans or None",
            None,
            None,
        )
    return ipc.Outcome(
        run_id=message.run_id, attempt_number=message.attempt_number, ok=True, output_json=output
    )


def serve(fd: int, module_name: str) -> int:
    """The worker process's main loop; returns its exit code."""
    sock = socket.socket(fileno=fd)
    try:
        load_tasks(module_name)
    except BaseException:
        sock.sendall(ipc.frame(ipc.LoadFailed(error=traceback.format_exc())))
        return 1
    sock.sendall(ipc.frame(ipc.Ready(pid=os.getpid(), tasks=[t.manifest() for t in registry.values()])))
    loop = asyncio.new_event_loop()
    try:
        while True:
            message = ipc.read_blocking(sock)
            if message is None:
                return 0
            if isinstance(message, ipc.Execute):
                outcome = loop.run_until_complete(execute(message))
                sock.sendall(ipc.frame(outcome))
    finally:
        loop.run_until_complete(_client.aclose())
        loop.close()
