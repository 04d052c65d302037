"""GET /metrics on every service, scraped and parsed as Prometheus does."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from slipstream import queues, runs, tasks
from slipstream_platform.local import SERVICES

from tests.conftest import eventually
from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


async def scrape(platform: Platform, service: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{platform.local.ports[service]}/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_every_service_serves_its_metrics(platform: Platform, sdk: None) -> None:
    before = await scrape(platform, "supervisor")
    handles = [await tasks.trigger("echo", {"i": i}) for i in range(5)]
    delayed = await tasks.trigger("echo", {}, delay="1h")
    for handle in handles:
        await eventually(lambda h=handle: _done(h.id), timeout=30)
    api = await scrape(platform, "trigger_api")
    assert value(api, "slipstream_triggers_total", task="echo") >= 6

    async def counted() -> dict | None:
        s = await scrape(platform, "supervisor")
        done = value(s, "slipstream_attempt_duration_seconds_count", task="echo", status="COMPLETED")
        was = value(before, "slipstream_attempt_duration_seconds_count", task="echo", status="COMPLETED")
        return s if done - was >= 5 else None

    supervisor = await eventually(counted, timeout=30)
    assert value(supervisor, "slipstream_trigger_to_start_seconds_count", task="echo") >= 5
    assert value(supervisor, "slipstream_runs_finished_total", task="echo", status="COMPLETED") >= 5
    await queues.pause("metrics-paused")
    held = await tasks.trigger("echo", {}, queue="metrics-paused")
    queue_manager = await scrape(platform, "queue_manager")
    assert value(queue_manager, "slipstream_runs", status="DELAYED", task="echo") >= 1
    assert value(queue_manager, "slipstream_queue_queued", queue="metrics-paused") == 1
    await queues.resume("metrics-paused")
    await eventually(lambda: _done(held.id), timeout=30)
    for service in SERVICES:
        samples = await scrape(platform, service)
        assert ("slipstream_db_pool_connections", (("state", "idle"),)) in samples, service
        assert ("slipstream_publish_failures_total", ()) in samples, service
    await runs.cancel(delayed.id)


async def _done(run_id: str) -> bool:
    return (await runs.retrieve(run_id)).is_completed


async def test_takes_are_counted_by_whether_they_found_runs(platform: Platform, sdk: None) -> None:
    # The rules that keep takes from finding nothing are unit tests (tests/unit/test_takes.py);
    # here the supervisor counts its takes, and runs triggered one at a time waste few.
    before = await scrape(platform, "supervisor")
    handles = [await tasks.trigger("echo", {"i": i}) for i in range(40)]
    for handle in handles:
        await eventually(lambda h=handle: _done(h.id), timeout=30)
    after = await scrape(platform, "supervisor")

    def delta(found: str) -> float:
        return (value(after, "slipstream_takes_total", found=found)
                - value(before, "slipstream_takes_total", found=found))

    assert 1 <= delta("yes") <= 40
    # What may still find nothing: a sweep (every second) and a signal from another service.
    assert delta("no") <= 10, delta("no")
