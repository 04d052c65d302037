"""The run state machine: which status changes are allowed, and the seed's boolean helpers."""

from __future__ import annotations

import pytest
from slipstream_platform.statemachine import TRANSITIONS, can_transition, is_final, sources_of, status_flags
from slipstream_proto.statuses import FINAL_STATUSES, RunStatus

S = RunStatus
ALL_STATUSES = list(RunStatus)

# The seed's helpers, written out per status so a change to either side is caught.
QUEUED = {S.QUEUED, S.PENDING_VERSION, S.DELAYED}
EXECUTING = {S.EXECUTING, S.DEQUEUED}
FAILED = {S.FAILED, S.CRASHED, S.SYSTEM_FAILURE, S.TIMED_OUT, S.EXPIRED}
FINAL = {S.COMPLETED, S.CANCELED, S.FAILED, S.TIMED_OUT, S.CRASHED, S.SYSTEM_FAILURE, S.EXPIRED}


def test_there_are_thirteen_statuses_and_seven_are_final() -> None:
    assert len(ALL_STATUSES) == 13
    assert FINAL_STATUSES == FINAL


def test_every_status_appears_in_transitions() -> None:
    assert set(TRANSITIONS) == set(ALL_STATUSES)


@pytest.mark.parametrize("status", sorted(FINAL), ids=str)
def test_final_statuses_have_no_outgoing_transitions(status: RunStatus) -> None:
    assert TRANSITIONS[status] == frozenset()
    assert not any(can_transition(status, target) for target in ALL_STATUSES)


@pytest.mark.parametrize("status", ALL_STATUSES, ids=str)
def test_no_status_transitions_to_itself(status: RunStatus) -> None:
    assert not can_transition(status, status)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.QUEUED, S.DEQUEUED),
        (S.DEQUEUED, S.EXECUTING),
        (S.EXECUTING, S.COMPLETED),
        (S.EXECUTING, S.QUEUED),  # a failed attempt that will be retried
        (S.EXECUTING, S.WAITING),
        (S.WAITING, S.QUEUED),
        (S.DELAYED, S.QUEUED),
        (S.QUEUED, S.EXPIRED),
        (S.PENDING_VERSION, S.QUEUED),
    ],
    ids=lambda s: str(s),
)
def test_legal_transitions(current: RunStatus, target: RunStatus) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.COMPLETED, S.QUEUED),
        (S.FAILED, S.QUEUED),
        (S.CANCELED, S.EXECUTING),
        (S.QUEUED, S.EXECUTING),  # must be dequeued first
        (S.QUEUED, S.COMPLETED),
        (S.DELAYED, S.EXECUTING),
        (S.WAITING, S.COMPLETED),
        (S.DEQUEUED, S.COMPLETED),
    ],
    ids=lambda s: str(s),
)
def test_illegal_transitions(current: RunStatus, target: RunStatus) -> None:
    assert not can_transition(current, target)


def test_can_transition_accepts_wire_strings() -> None:
    assert can_transition("EXECUTING", "QUEUED")
    assert not can_transition("COMPLETED", "QUEUED")


def test_can_transition_rejects_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="RUNNING"):
        can_transition("RUNNING", "QUEUED")


@pytest.mark.parametrize("status", sorted(set(ALL_STATUSES) - FINAL), ids=str)
def test_every_non_final_status_can_reach_a_final_status(status: RunStatus) -> None:
    seen, frontier = {status}, [status]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()] - seen:
            seen.add(nxt)
            frontier.append(nxt)
    assert seen & FINAL


@pytest.mark.parametrize("status", ALL_STATUSES, ids=str)
def test_status_flags_match_the_seed_helpers(status: RunStatus) -> None:
    assert status_flags(status) == {
        "is_queued": status in QUEUED,
        "is_executing": status in EXECUTING,
        "is_waiting": status is S.WAITING,
        "is_completed": status in FINAL,
        "is_success": status is S.COMPLETED,
        "is_failed": status in FAILED,
        "is_cancelled": status is S.CANCELED,
        "is_canceled": status is S.CANCELED,
    }


@pytest.mark.parametrize("status", ALL_STATUSES, ids=str)
def test_is_final_agrees_with_is_completed(status: RunStatus) -> None:
    assert is_final(status) is status_flags(status)["is_completed"] is (status in FINAL)


def test_status_flags_accept_wire_strings() -> None:
    assert status_flags("CANCELED")["is_canceled"] is True
    assert status_flags("CANCELED")["is_failed"] is False


def test_sources_of_lists_the_statuses_that_lead_to_a_target() -> None:
    assert sources_of(S.DEQUEUED) == ["QUEUED"]
    assert sources_of(S.EXECUTING) == ["DEQUEUED"]
    assert sources_of(S.COMPLETED) == ["EXECUTING"]
    assert sources_of(S.QUEUED) == ["DELAYED", "DEQUEUED", "EXECUTING", "PENDING_VERSION", "WAITING"]
    assert sources_of(S.DELAYED) == []


@pytest.mark.parametrize("target", ALL_STATUSES, ids=str)
def test_sources_of_agrees_with_can_transition(target: RunStatus) -> None:
    sources = sources_of(target)
    assert sources == sorted(sources)
    assert set(sources) == {str(s) for s in ALL_STATUSES if can_transition(s, target)}
    assert not set(sources) & {str(s) for s in FINAL}


def test_every_status_change_the_stores_make_is_an_edge_of_the_state_machine() -> None:
    from slipstream_platform.statemachine import can_transition
    from slipstream_platform.store.runs import EDGES

    illegal = sorted((a, b) for a, b in EDGES if not can_transition(a, b))
    assert illegal == []
    # Cancel reaches every unfinished status, and nothing leaves a final one.
    assert {a for a, b in EDGES if b == "CANCELED"} == {
        "PENDING_VERSION", "DELAYED", "QUEUED", "DEQUEUED", "EXECUTING", "WAITING"}
