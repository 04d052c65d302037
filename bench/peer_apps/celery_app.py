"""Celery with Redis as broker and result backend (so each run leaves a record, as in
Slipstream): the no-op task of the fast-path method."""

from __future__ import annotations

import os
import time

from celery import Celery

from bench.peer_apps import stamps

_redis = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=_redis, backend=_redis)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="stamp")
def stamp(kind: str, i: int) -> None:
    entry = time.time()
    stamps.record(kind, i, entry)
