"""Waitpoints inside a run: suspend now, resume later by replaying the task function.

A run that waits releases its slot and its worker process. When the waitpoint completes,
the run is queued again and its task function runs again from the top; every waitpoint it
already passed returns at once from the journal (a child run's result, or nothing for a
duration), so code before the last wait runs again and should be safe to repeat.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from slipstream_platform import ipc

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


async def waitpoint(request_type: str, **fields: Any) -> ipc.JournalEntry:
    """Pass a waitpoint: its journal entry if it completed before, else suspend the run."""
    state = current_replay.get()
    if state is None:
        instead = {"RUN": "trigger() and runs.retrieve()",
                   "BATCH": "batch_trigger() (or batch.trigger()) and batch.retrieve()"}.get(
            request_type, "asyncio.sleep()")
        raise TaskRunError(f"waits (wait.for_, trigger_and_wait, batch_trigger_and_wait) can only be used inside a"
                           f" running task; outside one, use {instead}")
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
