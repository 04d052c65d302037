"""/livez and /readyz on every service: alive while the process answers, ready only while
Postgres and NATS are there."""

from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import pytest
from slipstream_platform.local import SERVICES, LocalPlatform

from tests.conftest import eventually
from tests.e2e.conftest import FAST_SWEEPS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    folder = tmp_path_factory.mktemp("health")
    folder.chmod(0o755)
    platform = LocalPlatform(folder, fast_unsafe=True, service_env={**FAST_SWEEPS, "SLIPSTREAM_LOG_FORMAT": "json"})
    try:
        platform.start_servers()
        key = platform.bootstrap("health")["DEVELOPMENT"]
        platform.start_services("tests.e2e.tasks", key, concurrency=1)
        yield platform
    finally:
        platform.stop()


async def probe(port: int, path: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.json()


async def test_every_service_is_live_and_ready_and_says_what_is_away(local: LocalPlatform) -> None:
    for name in SERVICES:
        port = local.ports[name]
        service = name.replace("_", "-")
        assert await probe(port, "/livez") == (200, {"status": "ok", "service": service})
        assert await probe(port, "/readyz") == (200, {"status": "ok", "service": service})
    local.nats.stop()
    try:
        async def not_ready() -> dict[str, object] | None:
            status, body = await probe(local.ports["trigger_api"], "/readyz")
            return body if status == 503 else None

        body = await eventually(not_ready, timeout=30, message="trigger-api stayed ready without NATS")
        assert body["unavailable"] == ["nats"]
        assert (await probe(local.ports["supervisor"], "/livez"))[0] == 200  # alive: no restart needed
    finally:
        local.nats.start()

    async def ready_again() -> bool:
        return all([(await probe(local.ports[name], "/readyz"))[0] == 200 for name in SERVICES])

    await eventually(ready_again, timeout=60, message="the services did not become ready again")


def test_json_logs_are_one_object_a_line(local: LocalPlatform) -> None:
    lines = [line for name in SERVICES for line in (local.logs / f"{name}.log").read_text().splitlines()
             if line.startswith("{")]
    assert lines, "no JSON log lines"
    parsed = [json.loads(line) for line in lines]
    assert {p["service"] for p in parsed} >= {"supervisor", "trigger-api"}
    assert all({"time", "level", "service", "logger", "message"} <= p.keys() for p in parsed)
