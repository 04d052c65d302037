"""When a supervisor takes (`slipstream_platform.takes.Wakes`): the rules, without processes."""

from __future__ import annotations

from slipstream_platform.takes import HEARD_KEPT, TAKEN_KEPT, Wakes
from slipstream_proto import QueueSignal


def triggered(*runs: str, sender: str = "") -> QueueSignal:
    return QueueSignal(environment_id="env_1", reason="triggered", runs=runs, sender=sender)


def idle() -> Wakes:
    """A supervisor after a take that found nothing, waiting for a wake-up."""
    wakes = Wakes("worker_me", "env_1")
    wakes.begin()
    assert not wakes.took([], full=False)
    assert not wakes.wanted.is_set()
    return wakes


def test_a_signal_wakes_an_idle_taker() -> None:
    wakes = idle()
    wakes.signal(triggered("run_1"))
    assert wakes.wanted.is_set() and wakes.backlog


def test_a_signal_for_a_run_taken_here_already_wakes_nobody() -> None:
    wakes = idle()
    wakes.begin()
    wakes.took(["run_1", "run_2"], full=False)  # the take for run_1's signal found run_2 too
    wakes.signal(triggered("run_2"))
    assert not wakes.wanted.is_set()


def test_a_signal_during_a_take_makes_it_take_again_unless_it_got_the_runs() -> None:
    wakes = idle()
    wakes.begin()
    wakes.signal(triggered("run_2"))
    wakes.signal(triggered("run_3"))
    assert not wakes.wanted.is_set()  # the take going on decides
    assert wakes.took(["run_1", "run_2"], full=False)  # run_3 came after its snapshot: again
    wakes.begin()
    wakes.signal(triggered("run_4"))
    assert not wakes.took(["run_3", "run_4"], full=False)
    assert not wakes.wanted.is_set() and not wakes.backlog


def test_a_signal_that_names_no_runs_always_takes_again() -> None:
    for signal in (QueueSignal(environment_id="env_1", reason="released"),
                   QueueSignal(environment_id="env_1", reason="triggered"),  # a batch: too many to name
                   QueueSignal(environment_id="env_1", reason="released", runs=("run_1",))):  # a retry
        wakes = idle()
        wakes.begin()
        wakes.signal(signal)
        assert wakes.took(["run_1"], full=False), signal


def test_a_full_take_takes_again() -> None:
    wakes = idle()
    wakes.begin()
    assert wakes.took(["run_1", "run_2"], full=True) and wakes.backlog


def test_its_own_signals_are_skipped_and_its_announcements_wake_it() -> None:
    wakes = idle()
    wakes.signal(triggered("run_9", sender="worker_me"))
    wakes.signal(QueueSignal(environment_id="env_1", reason="released", sender="worker_me"))
    assert not wakes.wanted.is_set()
    wakes.signal(triggered("run_9", sender="worker_other"))
    assert wakes.wanted.is_set()
    # What it announces wakes it here, with the runs that wait when it knows them all.
    wakes = idle()
    wakes.announced([], freed=False)
    assert not wakes.wanted.is_set()  # nothing became ready
    wakes.begin()
    wakes.announced([], freed=True, waiting=["run_5"])  # an end freed a slot: run_5 waits
    assert not wakes.took(["run_5"], full=False)
    wakes.begin()
    wakes.announced([], freed=True)  # capacity freed, what waits unknown
    assert wakes.took(["run_5"], full=False)
    wakes.begin()
    wakes.announced(["run_6"], freed=False)  # a retry ready at once
    assert wakes.took([], full=False)


def test_a_freed_slot_takes_while_runs_may_wait_but_not_during_a_take() -> None:
    wakes = idle()
    wakes.slot_freed()
    assert not wakes.wanted.is_set()  # nothing waits
    wakes.begin()
    assert wakes.took(["run_1"], full=True)
    wakes.begin()
    wakes.slot_freed()
    assert not wakes.wanted.is_set()  # the take going on counts its own room
    wakes.took(["run_2"], full=True)
    wakes.slot_freed()
    assert wakes.wanted.is_set()


def test_a_failed_take_takes_again_only_if_woken_meanwhile() -> None:
    wakes = idle()
    wakes.begin()
    wakes.failed()
    assert not wakes.wanted.is_set()
    wakes.begin()
    wakes.signal(triggered("run_1"))
    wakes.failed()
    assert wakes.wanted.is_set()


def test_it_remembers_the_newest_runs_it_took() -> None:
    wakes = idle()
    wakes.begin()
    wakes.took([f"run_{i}" for i in range(TAKEN_KEPT + 10)], full=False)
    assert len(wakes.taken) == TAKEN_KEPT
    wakes.signal(triggered("run_0"))  # forgotten: it takes (and finds nothing)
    assert wakes.wanted.is_set()
    wakes = idle()
    wakes.begin()
    wakes.took([f"run_{i}" for i in range(TAKEN_KEPT + 10)], full=False)
    wakes.signal(triggered(f"run_{TAKEN_KEPT + 9}"))
    assert not wakes.wanted.is_set()


def test_a_run_it_took_that_is_queued_again_is_taken_again() -> None:
    # A retry ready at once, or a parent resumed, is a run taken here before: QUEUED again
    # while a take that cannot have seen it runs, it makes the supervisor take again.
    for freed, waiting in ((False, None), (True, ["run_1"])):
        wakes = idle()
        wakes.begin()
        wakes.took(["run_1"], full=False)
        wakes.begin()
        wakes.announced([] if freed else ["run_1"], freed=freed, waiting=waiting)
        assert wakes.took([], full=False), (freed, waiting)
        # A trigger's late signal for it no longer counts as answered either.
        assert "run_1" not in wakes.taken


def test_what_one_take_hears_is_bounded() -> None:
    wakes = idle()
    wakes.begin()
    for i in range(HEARD_KEPT * 4):
        wakes.signal(triggered(f"run_{i}"))
    assert len(wakes.heard) <= HEARD_KEPT and wakes.unnamed
    assert wakes.took([f"run_{i}" for i in range(HEARD_KEPT * 4)], full=False)  # past the bound: take again


def test_a_run_taken_again_is_remembered_as_the_newest() -> None:
    wakes = idle()
    wakes.begin()
    wakes.took(["run_old"] + [f"run_{i}" for i in range(TAKEN_KEPT - 1)], full=False)
    wakes.begin()
    wakes.took(["run_old", "run_new"], full=False)  # run_0 is forgotten, not run_old
    assert "run_old" in wakes.taken and "run_0" not in wakes.taken
