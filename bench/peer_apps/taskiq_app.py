"""taskiq with its NATS JetStream broker (pull-based): the no-op task of the fast-path method."""

from __future__ import annotations

import os
import time

from taskiq_nats import PullBasedJetStreamBroker

from bench.peer_apps import stamps

broker = PullBasedJetStreamBroker(os.environ.get("PEER_NATS_URL", "nats://127.0.0.1:4222"), queue="bench_stamp")


@broker.task(task_name="stamp")
async def stamp(kind: str, i: int) -> None:
    entry = time.time()
    stamps.record(kind, i, entry)
