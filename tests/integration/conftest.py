"""Fixtures of the store tests."""

from __future__ import annotations

import asyncpg
import pytest
from slipstream_platform.store import environments


@pytest.fixture
async def env_id(pool: asyncpg.Pool) -> str:
    """The DEVELOPMENT environment of a fresh project."""
    async with pool.acquire() as conn:
        keys = await environments.bootstrap_project(conn, "store-tests")
    env = await environments.by_api_key(pool, keys["DEVELOPMENT"])
    assert env is not None and env.type == "DEVELOPMENT"
    return env.id
