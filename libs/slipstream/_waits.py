"""Waitpoints inside a run: suspend now, resume later by replaying the task function.

A run that waits releases its slot and its worker process. When the waitpoint completes,
the run is queued again and its task function runs again from the top; every waitpoint it
already passed returns at once from the journal (a child run's result, or nothing for a
duration), so code before the last wait runs again and should be safe to repeat.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from slipstream_core import ipc

from slipstream.errors import TaskRunError


class NonDeterministicReplayError(TaskRunError):
    """On resume, the task reached different waitpoints than the first time."""


class Suspend(BaseException):
    """Unwinds the task to its runtime, which suspends the run (not an error: never catch it)."""

    def __init__(self, request: ipc.WaitRequest) -> None:
        super().__init__(f"suspend at waitpoint {request.seq} ({request.type})")
        self.request = request


class ReplayState:
    """The journal of one execution, and how far the task function has got through it."""

    def __init__(
        self,
        journal: list[ipc.JournalEntry],
        on_resume: Callable[[ipc.JournalEntry], Awaitable[None]],
        *,
        mute: bool = True,
    ) -> None:
        self.journal = {entry.seq: entry for entry in journal}
        self.last = max(self.journal) if self.journal else -1
        self.next_seq = 0
        # While a resumed attempt replays, its logger lines are not stored again (a retry is a
        # new attempt: its lines are its own).
        self.replaying = mute and bool(self.journal)
        self.on_resume = on_resume


current_replay: contextvars.ContextVar[ReplayState | None] = contextvars.ContextVar(
    "slipstream_replay", default=None
)


def is_replaying() -> bool:
    """Whether the task function is re-running code it ran before its last wait."""
    state = current_replay.get()
    return state is not None and state.replaying


def _running(request_type: str) -> ReplayState:
    state = current_replay.get()
    if state is None:
        instead = {"RUN": "trigger() and runs.retrieve()",
                   "BATCH": "batch_trigger() (or batch.trigger()) and batch.retrieve()"}.get(
            request_type, "asyncio.sleep()")
        raise TaskRunError(f"waits (wait.for_, trigger_and_wait, batch_trigger_and_wait) can only be used inside a"
                           f" running task; outside one, use {instead}")
    return state


def next_waitpoint(request_type: str) -> tuple[int, bool]:
    """The position the next waitpoint will take, and whether the journal holds it already (a
    replay): what a wait that acts before `waitpoint` (streaming a batch) needs to know first."""
    state = _running(request_type)
    return state.next_seq, state.next_seq in state.journal


async def waitpoint(request_type: str, **fields: Any) -> ipc.JournalEntry:
    """Pass a waitpoint: its journal entry if it completed before, else suspend the run."""
    state = _running(request_type)
    seq = state.next_seq
    state.next_seq += 1
    entry = state.journal.get(seq)
    if entry is None:
        raise Suspend(ipc.WaitRequest(seq=seq, type=request_type, **fields))
    if entry.type != request_type or (request_type == "RUN" and entry.task_id != fields.get("task_id")):
        raise NonDeterministicReplayError(
            f"waitpoint {seq} was a {entry.type} ({entry.task_id or 'duration'}) when the run first got"
            f" there, and is a {request_type} ({fields.get('task_id') or 'duration'}) on resume: code before"
            " a wait must take the same path every time"
        )
    if seq == state.last:
        state.replaying = False
        await state.on_resume(entry)
    return entry


_step_encoder = msgspec.json.Encoder()


async def step(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn(*args, **kwargs)` once per run: its result is journaled before `step` returns,
    so when the run replays (after a wait, or in a retry) `step` returns the journaled result
    instead of calling `fn` again. The result must be JSON; what `step` returns is its JSON
    form (a tuple comes back as a list, a datetime as a string), the same every time.
    """
    from slipstream import _client
    from slipstream._task import current_attempt_number, current_run_id

    state = current_replay.get()
    run_id, attempt = current_run_id.get(), current_attempt_number.get()
    if state is None or run_id is None or attempt is None:
        raise TaskRunError("step() can only be used inside a running task; outside one, call the function itself")
    if not isinstance(name, str) or not 0 < len(name) <= 256:
        raise TaskRunError(f"a step's name is 1-256 characters, got {name!r}")
    seq = state.next_seq
    state.next_seq += 1
    entry = state.journal.get(seq)
    if entry is not None:
        if entry.type != "STEP" or entry.task_id != name:
            raise NonDeterministicReplayError(
                f"position {seq} was a {entry.type} ({entry.task_id or 'duration'}) when the run first got there,"
                f" and is step {name!r} on replay: code before a wait or step must take the same path every time")
        if seq == state.last:
            state.replaying = False
        return msgspec.json.decode(entry.result_json or "null")
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    try:
        encoded = _step_encoder.encode(result)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TaskRunError(f"step {name!r} returned something that is not JSON ({exc}); return JSON data") from None
    await _client.request("POST", f"/api/v1/runs/{run_id}/steps", _StepAnswer,
                          {"seq": seq, "name": name, "attemptNumber": attempt, "result": msgspec.Raw(encoded)},
                          request_id=f"{run_id}:{attempt}:{seq}")
    return msgspec.json.decode(encoded)


class _StepAnswer(msgspec.Struct):
    seq: int
