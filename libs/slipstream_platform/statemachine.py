"""The run state machine that every service uses.

A run moves only along the edges below and never leaves a final status. Store functions
guard their UPDATEs with the allowed source statuses from here, so two services racing
on one run cannot both win.
"""

from __future__ import annotations

from slipstream_proto.statuses import FINAL_STATUSES, RunStatus

S = RunStatus

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    S.PENDING_VERSION: frozenset({S.QUEUED, S.CANCELED, S.EXPIRED, S.SYSTEM_FAILURE}),
    S.DELAYED: frozenset({S.QUEUED, S.PENDING_VERSION, S.CANCELED, S.EXPIRED}),
    S.QUEUED: frozenset({S.DEQUEUED, S.CANCELED, S.EXPIRED, S.PENDING_VERSION, S.SYSTEM_FAILURE}),
    S.DEQUEUED: frozenset({S.EXECUTING, S.QUEUED, S.CANCELED, S.SYSTEM_FAILURE}),
    S.EXECUTING: frozenset(
        {
            S.COMPLETED,
            S.FAILED,
            S.QUEUED,  # a failed attempt that will be retried
            S.WAITING,
            S.CANCELED,
            S.TIMED_OUT,
            S.CRASHED,
            S.SYSTEM_FAILURE,
        }
    ),
    S.WAITING: frozenset({S.QUEUED, S.CANCELED, S.SYSTEM_FAILURE, S.TIMED_OUT}),
    **{final: frozenset() for final in FINAL_STATUSES},
}

QUEUED_STATUSES = frozenset({S.QUEUED, S.PENDING_VERSION, S.DELAYED})
EXECUTING_STATUSES = frozenset({S.EXECUTING, S.DEQUEUED})
FAILED_STATUSES = frozenset({S.FAILED, S.CRASHED, S.SYSTEM_FAILURE, S.TIMED_OUT, S.EXPIRED})


def can_transition(current: RunStatus | str, target: RunStatus | str) -> bool:
    """Whether a run in `current` may move to `target`."""
    return RunStatus(target) in TRANSITIONS[RunStatus(current)]


def sources_of(target: RunStatus) -> list[str]:
    """The statuses a run may move to `target` from, for guarded UPDATEs."""
    return sorted(str(s) for s, targets in TRANSITIONS.items() if target in targets)


def is_final(status: RunStatus | str) -> bool:
    """Whether the status is final (the seed's `isCompleted`)."""
    return RunStatus(status) in FINAL_STATUSES


def status_flags(status: RunStatus | str) -> dict[str, bool]:
    """The seed's boolean helpers for a status, keyed by their snake_case names."""
    s = RunStatus(status)
    return {
        "is_queued": s in QUEUED_STATUSES,
        "is_executing": s in EXECUTING_STATUSES,
        "is_waiting": s is S.WAITING,
        "is_completed": s in FINAL_STATUSES,
        "is_success": s is S.COMPLETED,
        "is_failed": s in FAILED_STATUSES,
        "is_cancelled": s is S.CANCELED,
        "is_canceled": s is S.CANCELED,
    }
