"""The SDK for code without an event loop (Django and Flask views, scripts, Celery-style habits):
the same functions as the async SDK, called without `await`.

    from slipstream.sync import runs, tasks

    handle = tasks.trigger("send-email", {"to": "ada@example.com"})   # or send_email.trigger_sync(...)
    run = runs.retrieve(handle)
    for update in runs.subscribe_to_run(handle.id):
        print(update.status)

Every call runs on one event loop in a daemon thread of this process (slipstream._bridge): one
pool of connections per process, safe to call from any number of threads, and from a thread
that runs an event loop of its own (it blocks that thread, without deadlock). Settings,
retries, request ids and errors are the async SDK's.
"""

from __future__ import annotations

from slipstream._bridge import bridge
from slipstream.sync import auth, batch, deployments, idempotency_keys, queues, regions, runs, schedules, tasks

__all__ = [
    "auth", "batch", "close", "deployments", "idempotency_keys", "queues", "regions", "runs", "schedules", "tasks",
]


def close() -> None:
    """Close the sync client's connections and stop its thread (the next call starts them again)."""
    bridge.close()
