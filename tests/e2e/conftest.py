"""The whole platform as processes: embedded NATS and Postgres plus the five services."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import slipstream
from slipstream_platform.local import LocalPlatform

pytestmark = pytest.mark.e2e

# Short timeouts so that recovery is observable within a test.
FAST_SWEEPS = {
    "SLIPSTREAM_WORKER_TIMEOUT": "3",
    "SLIPSTREAM_HEARTBEAT_INTERVAL": "0.5",
    "SLIPSTREAM_SWEEP_INTERVAL": "0.5",
    "SLIPSTREAM_DEQUEUED_TIMEOUT": "5",
    "SLIPSTREAM_POLL_INTERVAL": "1",
    "SLIPSTREAM_SHUTDOWN_GRACE": "5",
    "SLIPSTREAM_WATCHDOG_GRACE": "1",
}


class Platform:
    """A running LocalPlatform with the keys of a test project."""

    def __init__(self, local: LocalPlatform, keys: dict[str, str]) -> None:
        self.local = local
        self.keys = keys
        self.key = keys["DEVELOPMENT"]
        self.api_url = local.api_url
        self.realtime_url = local.realtime_url

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    folder = tmp_path_factory.mktemp("platform")
    folder.chmod(0o755)
    # Spans go to the services' logs and to Postgres, where test_telemetry follows one trace.
    env = {**FAST_SWEEPS, "SLIPSTREAM_OTEL_EXPORTER": "console,postgres"}
    local = LocalPlatform(folder, fast_unsafe=True, service_env=env)
    try:
        local.start_servers()
        keys = local.bootstrap("e2e")
        local.start_services("tests.e2e.tasks", keys["DEVELOPMENT"], concurrency=4)
        yield Platform(local, keys)
    finally:
        local.stop()


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=platform.api_url, headers=platform.headers()) as session:
        yield session


@pytest.fixture
def sdk(platform: Platform) -> Iterator[None]:
    """Point the SDK at the test platform, as SLIPSTREAM_* variables would."""
    slipstream.configure(api_url=platform.api_url, secret_key=platform.key, realtime_url=platform.realtime_url)
    yield
    import slipstream._config as config

    config._override = None
    os.environ.pop("SLIPSTREAM_API_URL", None)
