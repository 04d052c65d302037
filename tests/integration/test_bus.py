"""The JetStream bus against a real nats-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from slipstream_platform import bus
from slipstream_platform.embedded import EmbeddedNats
from slipstream_platform.store.runs import Transition
from slipstream_proto import STREAMS, CancelRun, QueueSignal, RunUpdated, decode_event
from slipstream_proto.events import (
    SIGNAL_RUNS,
    dispatch_subject,
    queue_signal_subject,
    queue_signals_for,
    queue_signals_of,
    run_updated_subject,
)


async def test_streams_are_created_idempotently_and_events_round_trip(nats_server: EmbeddedNats) -> None:
    nc = await bus.connect(nats_server.url, "test")
    try:
        js = nc.jetstream()
        await bus.ensure_streams(js)
        await bus.ensure_streams(js)
        names = {(await js.stream_info(spec.name)).config.name for spec in STREAMS}
        assert names == {spec.name for spec in STREAMS}

        received: asyncio.Queue[object] = asyncio.Queue()

        async def on_message(msg) -> None:  # type: ignore[no-untyped-def]
            received.put_nowait(decode_event(msg.data))
            await msg.ack()

        # A cancel goes into the dispatch stream (kept on disk) and reaches the worker's consumer.
        sub = await js.subscribe(dispatch_subject("worker_1"), cb=on_message, manual_ack=True)
        b = bus.Bus(nc)
        cancel = CancelRun(run_id="run_1", worker_id="worker_1")
        await b.publish(dispatch_subject("worker_1"), cancel)
        assert await asyncio.wait_for(received.get(), 10) == cancel
        await sub.unsubscribe()
        # A status change is a core publish, to whoever watches that run at that moment.
        watch = await nc.subscribe(run_updated_subject("env_bus", "run_1"), cb=on_message)
        await nc.flush()
        event = RunUpdated(run_id="run_1", environment_id="env_bus", status="QUEUED",
                           updated_at=datetime(2026, 1, 1, tzinfo=UTC))
        await b.notify([(run_updated_subject("env_bus", "run_1"), event)])
        await nc.flush()
        assert await asyncio.wait_for(received.get(), 10) == event
        await watch.unsubscribe()
    finally:
        await nc.close()


async def test_queue_signals_reach_their_environment_and_their_reason(nats_server: EmbeddedNats) -> None:
    nc = await bus.connect(nats_server.url, "test")
    try:
        env_heard: asyncio.Queue[object] = asyncio.Queue()
        timed_heard: asyncio.Queue[object] = asyncio.Queue()

        def into(heard: asyncio.Queue[object]):  # type: ignore[no-untyped-def]
            async def on_message(msg) -> None:  # type: ignore[no-untyped-def]
                heard.put_nowait(decode_event(msg.data))
            return on_message

        subs = [await nc.subscribe(queue_signals_of("env_a"), cb=into(env_heard)),
                await nc.subscribe(queue_signals_for("released"), queue="qm", cb=into(timed_heard))]
        await nc.flush()
        signals = [QueueSignal(environment_id=env, reason=reason)  # type: ignore[arg-type]
                   for env, reason in [("env_a", "triggered"), ("env_b", "released"), ("env_a", "released")]]
        await bus.Bus(nc).notify([(queue_signal_subject(s.environment_id, s.reason), s) for s in signals])
        await nc.flush()
        # The environment's supervisors hear all of its signals; the queue-manager only the timed ones.
        assert [await asyncio.wait_for(env_heard.get(), 10) for _ in range(2)] == [signals[0], signals[2]]
        assert [await asyncio.wait_for(timed_heard.get(), 10) for _ in range(2)] == [signals[1], signals[2]]
        for sub in subs:
            await sub.unsubscribe()
    finally:
        await nc.close()


async def test_retired_streams_are_deleted(nats_server: EmbeddedNats) -> None:
    nc = await bus.connect(nats_server.url, "test")
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="SLIPSTREAM_QUEUE", subjects=["slipstream.queue.>"]))
        await js.add_stream(StreamConfig(name="SLIPSTREAM_UPDATES", subjects=["slipstream.updates.>"]))
        await bus.ensure_streams(js)
        for name in ("SLIPSTREAM_QUEUE", "SLIPSTREAM_UPDATES"):
            try:
                await js.stream_info(name)
                raise AssertionError(f"{name} still exists")
            except NotFoundError:
                pass
    finally:
        await nc.close()


async def test_held_status_changes_go_out_in_order_before_a_wake_and_at_settle(nats_server: EmbeddedNats) -> None:
    nc = await bus.connect(nats_server.url, "test")
    try:
        heard: asyncio.Queue[object] = asyncio.Queue()

        async def on_message(msg) -> None:  # type: ignore[no-untyped-def]
            heard.put_nowait(decode_event(msg.data))

        subs = [await nc.subscribe(run_updated_subject("env_held", "*"), cb=on_message),
                await nc.subscribe(queue_signals_of("env_held"), cb=on_message)]
        await nc.flush()
        at = datetime(2026, 1, 1, tzinfo=UTC)

        def moved(run_id: str, status: str) -> Transition:
            return Transition(run_id=run_id, environment_id="env_held", status=status, updated_at=at)

        def update(t: Transition) -> RunUpdated:
            return RunUpdated(run_id=t.run_id, environment_id=t.environment_id, status=t.status, updated_at=at)

        # Held for a minute: only a wake, or settle, sends them sooner.
        b = bus.Bus(nc, status_delay=60)
        started, ended = moved("run_a", "EXECUTING"), moved("run_a", "COMPLETED")
        await b.announce([started])
        await b.announce([ended], "released")  # a reason that wakes nobody: held too
        retried = moved("run_b", "QUEUED")
        await b.announce([retried], "released")  # a run became QUEUED: its supervisors wake now
        await nc.flush()
        expected = [update(started), update(ended), update(retried),
                    QueueSignal(environment_id="env_held", reason="released", runs=("run_b",))]
        assert [await asyncio.wait_for(heard.get(), 10) for _ in expected] == expected
        last = moved("run_c", "EXECUTING")
        await b.announce([last])
        await b.settle()
        await nc.flush()
        assert await asyncio.wait_for(heard.get(), 10) == update(last)
        # A short delay sends what is held by itself.
        quick = bus.Bus(nc, status_delay=0.01)
        await quick.announce([ended])
        assert await asyncio.wait_for(heard.get(), 10) == update(ended)
        for sub in subs:
            await sub.unsubscribe()
    finally:
        await nc.close()


async def test_a_signal_names_the_few_runs_that_woke_it_and_its_sender(nats_server: EmbeddedNats) -> None:
    nc = await bus.connect(nats_server.url, "test")
    try:
        heard: asyncio.Queue[QueueSignal] = asyncio.Queue()

        async def on_signal(msg) -> None:  # type: ignore[no-untyped-def]
            heard.put_nowait(decode_event(msg.data))

        sub = await nc.subscribe(queue_signals_of("env_named"), cb=on_signal)
        await nc.flush()
        at = datetime(2026, 1, 1, tzinfo=UTC)

        def queued(n: int) -> list[Transition]:
            return [Transition(run_id=f"run_{i}", environment_id="env_named", status="QUEUED", updated_at=at)
                    for i in range(n)]

        b = bus.Bus(nc)
        b.sender = "worker_me"
        await b.announce(queued(2), "triggered")
        await b.announce(queued(SIGNAL_RUNS + 1), "triggered")  # a batch: too many to name
        await b.announce(queued(1), "released", ["env_named"])  # capacity freed too: any run may go
        await b.announce([], "worker", ["env_named"])
        await nc.flush()
        got = [await asyncio.wait_for(heard.get(), 10) for _ in range(4)]
        assert [s.runs for s in got] == [("run_0", "run_1"), (), (), ()]
        assert {s.sender for s in got} == {"worker_me"}
        await sub.unsubscribe()
    finally:
        await nc.close()
