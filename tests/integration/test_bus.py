"""The JetStream bus against a real nats-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from slipstream_platform import bus
from slipstream_platform.embedded import EmbeddedNats
from slipstream_proto import STREAMS, QueueSignal, RunUpdated, decode_event
from slipstream_proto.events import queue_signal_subject, run_updated_subject

from tests.conftest import eventually


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

        sub = await js.subscribe("slipstream.updates.env_bus.>", cb=on_message, manual_ack=True)
        b = bus.Bus(nc)
        event = RunUpdated(run_id="run_1", environment_id="env_bus", status="QUEUED",
                           updated_at=datetime(2026, 1, 1, tzinfo=UTC))
        await b.publish(run_updated_subject("env_bus", "run_1"), event)
        await b.notify([(queue_signal_subject("env_bus"), QueueSignal(environment_id="env_bus", reason="triggered"))])
        await nc.flush()
        assert await asyncio.wait_for(received.get(), 10) == event
        await sub.unsubscribe()
        # A core publish (notify) reaches the stream asynchronously: the flush does not wait for it.

        async def stored() -> bool:
            return (await js.stream_info("SLIPSTREAM_QUEUE")).state.messages >= 1

        await eventually(stored, timeout=10, message="the queue signal stored in SLIPSTREAM_QUEUE")
    finally:
        await nc.close()
