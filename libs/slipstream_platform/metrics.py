"""Prometheus metrics: every service serves `GET /metrics` (prometheus_client's text format).

Each process has its own registry. What a service measures as it works (counters and
histograms) is defined here once; what is read from Postgres at scrape time (runs by status,
queues) is the queue-manager's collector, so one process pays for those queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

triggers = Counter("slipstream_triggers", "Runs created by trigger-api (batches count each run)",
                   ["task"], registry=REGISTRY)
trigger_to_start = Histogram("slipstream_trigger_to_start_seconds",
                             "From a run's creation to the start of its first attempt, seconds",
                             ["task"], buckets=_LATENCY, registry=REGISTRY)
attempt_duration = Histogram("slipstream_attempt_duration_seconds",
                             "An attempt's time in its worker process, by how it ended", ["task", "status"],
                             buckets=_DURATION, registry=REGISTRY)
runs_finished = Counter("slipstream_runs_finished", "Runs that reached a final status in this supervisor",
                        ["task", "status"], registry=REGISTRY)
takes = Counter("slipstream_takes", "A supervisor's takes, by whether they started runs (found: yes or no)",
                ["found"], registry=REGISTRY)
publish_failures = Counter("slipstream_publish_failures", "NATS publishes that failed (repaired by the sweepers)",
                           registry=REGISTRY)


_children: dict[tuple[object, tuple[str, ...]], object] = {}


def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, remembered: `labels` takes a lock and builds its key each call."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


class PoolCollector(Collector):
    """The service's Postgres pool: connections in use and idle."""

    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("slipstream_db_pool_connections", "Postgres connections of this process's pool",
                                   labels=["state"])
        if self.pool is not None:
            size, idle = self.pool.get_size(), self.pool.get_idle_size()
            family.add_metric(["in_use"], size - idle)
            family.add_metric(["idle"], idle)
        yield family


pool_collector = PoolCollector()
REGISTRY.register(pool_collector)


class _Snapshot(Collector):
    """Gauges read from Postgres before each scrape (`refresh`), served as they were read."""

    def __init__(self) -> None:
        self.families: list[GaugeMetricFamily] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self.families


snapshot = _Snapshot()


# Unfinished runs by status and task, and each queue's queued and running runs: the partial
# indexes of unfinished runs serve these (finished runs are counted by slipstream_runs_finished).
_RUNS_SQL = ("SELECT status, task_identifier, count(*) AS n FROM runs"
             " WHERE status IN ('PENDING_VERSION', 'DELAYED', 'QUEUED', 'DEQUEUED', 'EXECUTING', 'WAITING')"
             " GROUP BY 1, 2")
_QUEUES_SQL = ("SELECT queue, count(*) FILTER (WHERE status = 'QUEUED') AS queued,"
               " count(*) FILTER (WHERE status IN ('DEQUEUED', 'EXECUTING')) AS running FROM runs"
               " WHERE status IN ('QUEUED', 'DEQUEUED', 'EXECUTING') GROUP BY 1")


async def refresh_snapshot(pool: asyncpg.Pool) -> None:
    """Read the run and queue gauges (the queue-manager, before serving /metrics)."""
    runs = GaugeMetricFamily("slipstream_runs", "Unfinished runs by status and task", labels=["status", "task"])
    for r in await pool.fetch(_RUNS_SQL):
        runs.add_metric([r["status"], r["task_identifier"]], r["n"])
    queued = GaugeMetricFamily("slipstream_queue_queued", "QUEUED runs of each queue", labels=["queue"])
    running = GaugeMetricFamily("slipstream_queue_running", "Runs of each queue that hold a slot", labels=["queue"])
    for r in await pool.fetch(_QUEUES_SQL):
        queued.add_metric([r["queue"]], r["queued"])
        running.add_metric([r["queue"]], r["running"])
    snapshot.families = [runs, queued, running]


def exposition() -> bytes:
    return generate_latest(REGISTRY)


_snapshot_registered = False


def serve_snapshot() -> None:
    """Serve the Postgres gauges from this process (the queue-manager; once)."""
    global _snapshot_registered
    if not _snapshot_registered:
        REGISTRY.register(snapshot)
        _snapshot_registered = True
