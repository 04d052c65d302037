"""When a supervisor takes: what wakes its taker, and whether one take must follow another.

A supervisor takes its runs from Postgres when a queue signal says some may be ready, when a
slot frees while runs wait, and every sweep interval (ADR 0009). A take answers whatever woke
the taker before it began; what comes while it runs is kept, and decides after it whether to
take again. Two rules keep a supervisor from taking for nothing (with one producer
triggering back to back, 0.7 of its takes a run found nothing before them):

- A trigger's signal names its runs (`QueueSignal.runs`): a signal whose runs a take here
  started already (a take for an earlier signal found them) needs no take.
- A supervisor does not act on its own signals (`QueueSignal.sender`): it wakes itself when
  it sends them (`announced`), with the runs that wait when it knows them all. A run it
  announces QUEUED again (a retry, a resumed parent) is no longer one it took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from slipstream_proto import QueueSignal

# How many of the runs its takes started a supervisor remembers, to tell a trigger's signal
# for a run it has started already from one for a new run.
TAKEN_KEPT = 256
# How many run names the wake-ups during one take keep; past that, any run may be ready.
HEARD_KEPT = 64


class Wakes:
    """The taker's wake-ups of one supervisor (worker `worker_id`, environment `environment_id`).

    `wanted` is set when the taker should take; `backlog` while runs may be waiting (a slot
    that frees then takes at once). Since the last take began: `heard`, the runs the wake-ups
    named, and `unnamed`, whether one named none (capacity freed, a retry, a batch)."""

    def __init__(self, worker_id: str, environment_id: str) -> None:
        self.worker_id = worker_id
        self.environment_id = environment_id
        self.wanted = asyncio.Event()
        self.wanted.set()
        self.backlog = True
        self.taking = False
        self.heard: set[str] = set()
        self.unnamed = False
        self.taken: dict[str, None] = {}

    def signal(self, signal: QueueSignal) -> None:
        """A queue signal of the environment was heard."""
        if signal.sender == self.worker_id:
            return  # its own: `announced` woke the taker when it was sent
        named = signal.runs if signal.reason == "triggered" else ()
        if not (named and all(run_id in self.taken for run_id in named)):
            self.wake(named)

    def announced(self, queued: Iterable[str], freed: bool, waiting: list[str] | None = None) -> None:
        """This supervisor woke its environment's supervisors: for runs that became QUEUED
        (`queued`), or capacity it `freed`; `waiting`: the runs that wait, when all are known."""
        queued = tuple(queued)
        if not (queued or freed):
            return
        named = () if freed and waiting is None else tuple(waiting or ()) + queued
        for run_id in named:
            self.taken.pop(run_id, None)  # QUEUED (again: a retry, a resumed parent): not taken now
        self.wake(named)

    def wake(self, named: tuple[str, ...] = ()) -> None:
        """Runs may be ready (only those `named`, if any are): take once the take going on,
        if any, is done (then `heard` tells whether to take again)."""
        if named and len(self.heard) + len(named) <= HEARD_KEPT:
            self.heard.update(named)
        else:
            self.unnamed = True
        self.backlog = True
        if not self.taking:
            self.wanted.set()

    def slot_freed(self) -> None:
        """A slot freed: take if runs may wait (after the take going on, which counts its own room)."""
        if self.backlog and not self.taking:
            self.wanted.set()

    def begin(self) -> None:
        """A take begins: it answers every wake-up so far."""
        self.wanted.clear()
        self.heard.clear()
        self.unnamed = False
        self.taking = True

    def failed(self) -> None:
        """The take failed: take at once if a wake-up came meanwhile, else at the next one."""
        self.taking = False
        if self.heard or self.unnamed:
            self.wanted.set()

    def took(self, run_ids: Iterable[str], *, full: bool) -> bool:
        """The take started `run_ids`; `full`: it filled the room it asked for, or left runs.
        Whether to take again now."""
        self.taking = False
        for run_id in run_ids:
            self.taken.pop(run_id, None)  # (taken again: the newest)
            self.taken[run_id] = None
            if len(self.taken) > TAKEN_KEPT:
                del self.taken[next(iter(self.taken))]
        if full:
            self.backlog = True  # there may be more
            return True
        # Fewer than there was room for: nothing else is ready, unless a wake-up came
        # meanwhile for runs this take did not get.
        self.backlog = self.unnamed or not all(run_id in self.taken for run_id in self.heard)
        return self.backlog
