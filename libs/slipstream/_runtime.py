"""Inside a worker process: import the tasks, then run one attempt at a time.

The supervisor starts this process, keeps it warm, and sends it `Execute` messages over a
socket; task code runs here so that a crash or hang in it never takes the supervisor down.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import importlib
import os
import pkgutil
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from slipstream_core import ipc, run_errors
from slipstream_proto.machines import MACHINE_PRESETS

from slipstream import _client
from slipstream import metadata as _metadata
from slipstream._codec import encoder
from slipstream._context import (
    AttemptInfo,
    EnvironmentInfo,
    MachineInfo,
    QueueInfo,
    RunInfo,
    TaskContext,
    TaskInfo,
    TaskResult,
)
from slipstream._hooks import call_hook, global_hooks
from slipstream._locals import begin_attempt, end_attempt
from slipstream._logger import current_sink, logger
from slipstream._retry import retry_delay_ms
from slipstream._task import Task, current_attempt_number, current_run_id, queues, registry
from slipstream._tracing import task_span
from slipstream._waits import ReplayState, Suspend, current_replay
from slipstream.errors import (
    AbortTaskRunError,
    MaxDurationExceededError,
    OutputNotSerializableError,
    OutputTooLargeError,
    TaskPayloadParsedError,
)

# The largest output a run may have (its JSON); over 512 KB it is stored outside the run row.
OUTPUT_LIMIT = 100 * 1024 * 1024
_encoder = encoder  # outputs may be Structs, dataclasses or pydantic models


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


def _error_json(exc: BaseException, name: str | None = None, message: str | None = None) -> str:
    stack = "".join(traceback.format_exception(exc)) if exc.__traceback__ else None
    return _encoder.encode(
        {"name": name or type(exc).__name__, "message": message or str(exc) or repr(exc), "stackTrace": stack}
    ).decode()


def _hooks_of(task: Task[Any, Any], name: str) -> list[Callable[..., Any]]:
    """Global hooks first, then the task's own."""
    found = list(global_hooks[name])
    if name in task.hooks:
        found.append(task.hooks[name])
    return found


async def _ignore_errors(name: str, fns: list[Callable[..., Any]], **kwargs: Any) -> None:
    """Run hooks whose errors must not change the run's outcome; log the errors with the run."""
    for fn in fns:
        try:
            await call_hook(fn, **kwargs)
        except Exception as exc:
            logger.error(f"{name} hook {getattr(fn, '__qualname__', fn)!r} failed: {exc!r}",
                         hook=name, error=_error_json(exc))


class _Attempt:
    """One attempt: middleware around the start hooks, init, run and cleanup."""

    def __init__(self, task: Task[Any, Any], payload: Any, ctx: TaskContext, *, resuming: bool = False,
                 traceparent: str | None = None) -> None:
        self.traceparent = traceparent
        self.task = task
        self.payload = payload
        self.ctx = ctx
        self.init_output: Any = None
        self.resuming = resuming

    def kwargs(self, **more: Any) -> dict[str, Any]:
        return {"payload": self.payload, "ctx": self.ctx, "task": self.task.id,
                "init": self.init_output, **more}

    async def body(self) -> Any:
        # A resumed run goes on with its attempt: the start hooks ran when it began.
        if self.ctx.run.attempt.number == 1 and not self.resuming:
            for fn in _hooks_of(self.task, "on_start"):
                await call_hook(fn, **self.kwargs())
        if not self.resuming:
            for fn in _hooks_of(self.task, "on_start_attempt"):
                await call_hook(fn, **self.kwargs())
        for fn in _hooks_of(self.task, "init"):
            value = await call_hook(fn, **self.kwargs())
            if value is not None:
                self.init_output = value
        self.ctx = msgspec.structs.replace(self.ctx, init=self.init_output)
        try:
            if self.traceparent is None:  # tracing off: no span to open
                result = await self._call()
            else:
                with task_span(f"run {self.task.id}", self.traceparent,
                               {"run": self.ctx.run.id, "attempt": self.ctx.run.attempt.number}):
                    result = await self._call()
        except Suspend:
            raise  # the attempt is not over: cleanup runs when it is
        except BaseException:
            await self.cleanup()
            raise
        await self.cleanup()
        return result

    async def _call(self) -> Any:
        if self.task.is_async:
            return await self.task.fn(self.payload, self.ctx)
        return await asyncio.to_thread(contextvars.copy_context().run, self.task.fn, self.payload, self.ctx)

    async def cleanup(self) -> None:
        for fn in _hooks_of(self.task, "cleanup"):
            await call_hook(fn, **self.kwargs())

    def chain(self) -> Callable[[], Awaitable[Any]]:
        """The body wrapped in every middleware: global ones outermost, the task's innermost."""
        layers = [(name, fn) for name, fn in global_hooks["middleware"]]
        if "middleware" in self.task.hooks:
            layers.append(("task", self.task.hooks["middleware"]))
        call: Callable[[], Awaitable[Any]] = self.body
        for name, fn in reversed(layers):
            call = self._wrap(name, fn, call)
        return call

    def _wrap(
        self, name: str, fn: Callable[..., Any], inner: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[Any]]:
        async def layer() -> Any:
            box: list[Any] = []
            errors: list[BaseException] = []

            async def next_() -> Any:
                try:
                    box.append(await inner())
                except BaseException as exc:
                    errors.append(exc)
                    raise
                return box[0]

            await call_hook(fn, **self.kwargs(next=next_))
            if errors:
                raise errors[0]  # a middleware cannot swallow the attempt's error
            if not box:
                raise RuntimeError(f"middleware {name!r} returned without calling `await next()`")
            return box[0]

        return layer


def _wait_info(wait: ipc.WaitRequest | ipc.JournalEntry) -> dict[str, Any]:
    """What on_wait and on_resume hooks receive as `wait`."""
    info: dict[str, Any] = {"type": wait.type, "seq": wait.seq}
    if wait.task_id:
        info["task"] = wait.task_id
    if isinstance(wait, ipc.WaitRequest) and wait.resume_at is not None:
        info["until"] = datetime.fromtimestamp(wait.resume_at, UTC)
    return info


def _machine_info(name: str) -> MachineInfo | None:
    preset = MACHINE_PRESETS.get(name)
    return MachineInfo(name=preset.name, cpu=preset.cpu, memory_gb=preset.memory_gb) if preset else None


async def execute(message: ipc.Execute) -> ipc.Outcome:
    """Run one attempt, with its hooks, and report how it ended."""
    def outcome(**fields: Any) -> ipc.Outcome:
        return ipc.Outcome(run_id=message.run_id, attempt_number=message.attempt_number, **fields)

    task = registry.get(message.task_id)
    if task is None:
        return outcome(ok=False, error_json=run_errors.task_not_found(message.task_id))
    payload = msgspec.json.decode(message.payload_json) if message.payload_json else None
    parse = task.parse or task.payload_model
    if parse is not None:
        try:
            payload = parse(payload)
        except Exception as exc:
            what = "schema" if task.parse is not None else "payload type"
            parse_error = TaskPayloadParsedError(f"the payload does not match task {task.id!r}'s {what}: {exc}")
            return outcome(ok=False, error_json=_error_json(parse_error))
    initial = msgspec.json.decode(message.metadata_json) if message.metadata_json else {}
    ctx = TaskContext(
        run=RunInfo(
            id=message.run_id,
            attempt=AttemptInfo(id=message.attempt_id, number=message.attempt_number),
            created_at=datetime.fromisoformat(message.created_at),
            tags=message.tags,
            max_attempts=message.max_attempts,
            metadata=initial if isinstance(initial, dict) else {},
        ),
        task=TaskInfo(id=task.id),
        environment=EnvironmentInfo(id=message.environment_id, type=message.environment_type),
        machine=_machine_info(message.machine),
        queue=QueueInfo(name=message.queue),
    )
    attempt = _Attempt(task, payload, ctx, resuming=message.resuming, traceparent=message.traceparent)

    async def resumed(entry: ipc.JournalEntry) -> None:
        await _ignore_errors("on_resume", _hooks_of(task, "on_resume"), **attempt.kwargs(wait=_wait_info(entry)))

    replay_token = current_replay.set(ReplayState(message.journal, resumed, mute=message.resuming))
    locals_token = begin_attempt()
    _metadata._begin(message.run_id, dict(ctx.run.metadata))
    run_task = asyncio.ensure_future(attempt.chain()())
    _running[message.run_id] = (attempt, run_task, contextvars.copy_context())
    timed_out = False

    def deadline() -> None:
        nonlocal timed_out
        timed_out = True
        ctx.signal.cancel()  # set before the task unwinds, so cleanup code can see it
        run_task.cancel()

    timer = asyncio.get_running_loop().call_later(message.timeout_seconds, deadline) \
        if message.timeout_seconds is not None else None
    try:
        try:
            try:
                output = await run_task
            except Suspend as suspend:
                await _ignore_errors("on_wait", _hooks_of(task, "on_wait"),
                                     **attempt.kwargs(wait=_wait_info(suspend.request)))
                return outcome(ok=False, suspend=suspend.request)
            except (Exception, asyncio.CancelledError):
                if not (timed_out or ctx.signal.is_cancelled):
                    raise
                # Stopped: whatever the task did while unwinding does not change how it ended.
            finally:
                if timer is not None:
                    timer.cancel()
            if timed_out:
                raise _MaxDurationExceeded
            if ctx.signal.is_cancelled:
                # The outcome follows the on_cancel hooks (they may log, or await the run's result).
                hooks = _canceling.pop(message.run_id, None)
                if hooks is not None:
                    await asyncio.shield(hooks)
                # Sync code cannot be interrupted: its process is replaced.
                return outcome(ok=False, final_status="CANCELED", replace_process=not task.is_async,
                               error_json=run_errors.CANCELED)
            try:
                output_json = _encoder.encode(output).decode()
            except (TypeError, msgspec.EncodeError) as exc:
                raise OutputNotSerializableError(
                    f"task {task.id!r} returned a {type(output).__name__}, which is not JSON-serializable"
                    f" ({exc}); return dicts, lists, strings, numbers, booleans or None"
                ) from None
            if len(output_json) > OUTPUT_LIMIT // 4 and len(output_json.encode()) > OUTPUT_LIMIT:
                raise OutputTooLargeError(
                    f"task {task.id!r} returned {len(output_json.encode())} bytes of JSON; an output is at most"
                    f" 100 MB ({OUTPUT_LIMIT} bytes): store large results elsewhere and return a reference")
        except _MaxDurationExceeded:
            error = MaxDurationExceededError(f"the run exceeded its max_duration of {message.max_duration}s")
            await _failed(attempt, error)
            return outcome(ok=False, error_json=_error_json(error), final_status="TIMED_OUT",
                           replace_process=not task.is_async)
        except Exception as exc:
            try:
                retry = await _retry_decision(attempt, message, exc)
            except Exception as handler_error:
                # A catch_error hook that fails ends the run with its own error, not retried.
                await _failed(attempt, handler_error)
                return outcome(ok=False, error_json=_error_json(handler_error, "HandleErrorError"))
            if retry is None:
                await _failed(attempt, exc)
            return outcome(ok=False, error_json=_error_json(exc), retry_delay_ms=retry)
        kwargs = attempt.kwargs(output=output)
        await _ignore_errors("on_success", _hooks_of(task, "on_success"), **kwargs)
        await _ignore_errors("on_complete", _hooks_of(task, "on_complete"),
                             **attempt.kwargs(result=TaskResult(ok=True, data=output)))
        return outcome(ok=True, output_json=output_json)
    finally:
        _running.pop(message.run_id, None)
        _canceling.pop(message.run_id, None)
        await _metadata._end()  # what the attempt queued is sent before its outcome
        end_attempt(locals_token)
        current_replay.reset(replay_token)


class _MaxDurationExceeded(Exception):
    """The attempt ran out of the run's max_duration."""


# The attempt this process is executing, by run id (at most one).
_running: dict[str, tuple[_Attempt, asyncio.Future[Any], contextvars.Context]] = {}
# The on_cancel hooks of a canceled attempt, which its outcome waits for.
_canceling: dict[str, asyncio.Task[None]] = {}


async def cancel(run_id: str) -> None:
    """Signal the run, let on_cancel hooks run (they may await `run_promise`), then stop it."""
    found = _running.get(run_id)
    if found is None:
        return
    attempt, run_task, context = found
    attempt.ctx.signal.cancel()
    # Hooks run in the attempt's context: its logger, locals and parent run.
    hooks = _ignore_errors("on_cancel", _hooks_of(attempt.task, "on_cancel"),
                           **attempt.kwargs(run_promise=asyncio.shield(run_task), signal=attempt.ctx.signal))
    running_hooks = asyncio.get_running_loop().create_task(hooks, context=context)
    _canceling[run_id] = running_hooks
    await running_hooks
    if not run_task.done():
        run_task.cancel()


async def _failed(attempt: _Attempt, error: BaseException) -> None:
    """The run failed for good: on_failure, then on_complete."""
    await _ignore_errors("on_failure", _hooks_of(attempt.task, "on_failure"), **attempt.kwargs(error=error))
    await _ignore_errors("on_complete", _hooks_of(attempt.task, "on_complete"),
                         **attempt.kwargs(result=TaskResult(ok=False, error=error)))


async def _retry_decision(attempt: _Attempt, message: ipc.Execute, error: Exception) -> int | None:
    """Milliseconds until the next attempt, or None to fail the run now.

    The default follows the retry options; `catch_error` hooks (the task's, then global
    ones) may return `{"skip_retrying": True}`, `{"retry_at": datetime}` or
    `{"retry_delay_ms": n}` instead. Attempts never exceed max_attempts.
    """
    if isinstance(error, (AbortTaskRunError, OutputNotSerializableError, OutputTooLargeError)):
        return None
    if message.attempt_number >= message.max_attempts:
        return None
    delay: int | None = retry_delay_ms(attempt.task.retry, message.attempt_number)
    handlers = list(reversed(_hooks_of(attempt.task, "catch_error")))
    for fn in handlers:
        decision = await call_hook(fn, **attempt.kwargs(error=error, retry_delay_ms=delay))
        if decision is None:
            continue
        if not isinstance(decision, dict):
            raise TypeError(f"catch_error must return None or a dict, not {decision!r}")
        if decision.get("skip_retrying"):
            return None
        if "retry_at" in decision:
            at = decision["retry_at"]
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            return max(0, int((at - datetime.now(UTC)).total_seconds() * 1000))
        if "retry_delay_ms" in decision:
            return max(0, int(decision["retry_delay_ms"]))
        break
    return delay


def _die_with_parent() -> None:
    """On Linux, get SIGKILL when the supervisor dies, so an orphan never runs on."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def serve(
    fd: int, module_name: str, loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
) -> int:
    """The worker process's main loop; returns its exit code."""
    sock = socket.socket(fileno=fd)
    _die_with_parent()
    try:
        load_tasks(module_name)
    except BaseException:
        sock.sendall(ipc.frame(ipc.LoadFailed(error=traceback.format_exc())))
        return 1
    declared = [q.definition() for q in queues.values()]
    sock.sendall(ipc.frame(ipc.Ready(pid=os.getpid(), tasks=[t.definition() for t in registry.values()],
                                     queues=declared)))
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(sock))


_send: Callable[[ipc.Message], None] | None = None


def send_spans(spans: list[ipc.SpanRecord]) -> None:
    """Hand finished spans to the supervisor (from any thread); dropped before `serve` runs."""
    if _send is not None:
        _send(ipc.Spans(spans=spans))


async def _serve(sock: socket.socket) -> int:
    """Read attempts and cancels from the supervisor; run the attempts one at a time, in order."""
    global _send
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    reader, writer = await asyncio.open_connection(sock=sock)

    def send(message: ipc.Message) -> None:
        # Log lines of plain `def` tasks come from their thread: the loop writes them, in order.
        if threading.get_ident() == loop_thread:
            writer.write(ipc.frame(message))
        else:
            loop.call_soon_threadsafe(writer.write, ipc.frame(message))

    _send = send

    executes: asyncio.Queue[ipc.Execute | None] = asyncio.Queue()
    cancels: set[asyncio.Task[None]] = set()

    async def read() -> None:
        while True:
            message = await ipc.read(reader)
            if message is None:
                executes.put_nowait(None)
                return
            if isinstance(message, ipc.Execute):
                executes.put_nowait(message)
            elif isinstance(message, ipc.Cancel):
                task = asyncio.create_task(cancel(message.run_id))
                cancels.add(task)
                task.add_done_callback(cancels.discard)

    async def attempt(message: ipc.Execute) -> ipc.Outcome:
        # A task of its own: the context variables set here end with the attempt.
        run_id, number = message.run_id, message.attempt_number

        def sink(line: dict[str, Any]) -> None:
            send(ipc.LogLine(run_id=run_id, attempt_number=number, **line))

        current_sink.set(sink)
        current_run_id.set(run_id)
        current_attempt_number.set(number)
        return await execute(message)

    reading = asyncio.create_task(read())
    try:
        while True:
            message = await executes.get()
            if message is None:
                return 0
            send(await asyncio.create_task(attempt(message)))
            await writer.drain()
    finally:
        reading.cancel()
        await _client.aclose()
