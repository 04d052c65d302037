"""Tokens against Postgres: the signer of a token, one-shot tokens spent once, spent ones forgotten."""

from __future__ import annotations

import time

import asyncpg
import pytest
from slipstream_platform.store import environments
from slipstream_platform.tokens import Credentials, Denied, forget_spent, mint, use_once


async def test_a_token_is_checked_against_its_environment_and_spent_once(pool: asyncpg.Pool, env_id: str) -> None:
    found = await environments.with_key(pool, env_id)
    assert found is not None
    env, key = found
    credentials = Credentials(pool)
    assert (await credentials.access(key)).is_secret
    token, _ = mint(env, key, ["trigger:tasks:email"], 60, one_shot=True)
    access = await credentials.access(token)
    assert access.scopes == {"trigger:tasks:email"} and access.jti is not None and access.key == key
    async with pool.acquire() as conn:
        async with conn.transaction():
            await use_once(conn, access)
        with pytest.raises(Denied, match="has been used"):
            await use_once(conn, access)
        # A spend whose transaction rolls back leaves the token good.
        other = await credentials.access(mint(env, key, ["trigger:tasks:email"], 60, one_shot=True)[0])
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await use_once(conn, other)
                raise RuntimeError("the trigger failed")
        await use_once(conn, other)
        await conn.execute("UPDATE spent_tokens SET expires_at = now() - interval '1 second' WHERE jti = $1",
                           access.jti)
    assert await forget_spent(pool) >= 1
    assert await pool.fetchval("SELECT count(*) FROM spent_tokens WHERE jti = $1", access.jti) == 0
    with pytest.raises(Denied, match="secret keys are not accepted in URLs"):
        await credentials.access(key, in_url=True)
    assert (await credentials.access(token, in_url=True)).environment.id == env_id
    assert time.time() < access.expires_at
