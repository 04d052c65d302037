"""Real servers for the tests: nats-server with JetStream and Postgres, started once per run
(and an S3-compatible server for the tests of that payload store).

Postgres is migrated once into a template database; each integration test gets its own
database copied from it (`CREATE DATABASE ... TEMPLATE`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from slipstream_platform import db
from slipstream_platform.embedded import EmbeddedNats, EmbeddedPostgres

T = TypeVar("T")
TEMPLATE = "slipstream_template"
_counter = itertools.count()


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 30, interval: float = 0.05,
    message: str = "condition not met",
) -> T:
    """Call `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{message} within {timeout}s (last value: {last!r})")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3-compatible server (moto's, in a thread of the test process): its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    folder = tmp_path_factory.mktemp("pg")
    folder.chmod(0o755)
    server = EmbeddedPostgres(Path(folder) / "data", fast_unsafe=True)
    server.start()

    async def make_template() -> None:
        await db.ensure_database(server.dsn(), TEMPLATE)
        conn = await asyncpg.connect(server.dsn(TEMPLATE))
        try:
            await db.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(make_template())
    yield server
    server.stop()


@pytest.fixture
async def database_url(postgres_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"test_{next(_counter)}_{int(time.time() * 1000) % 10_000_000}"
    admin = await asyncpg.connect(postgres_server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    finally:
        await admin.close()
    yield postgres_server.dsn(name)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()
