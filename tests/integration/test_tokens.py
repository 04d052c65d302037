"""Tokens against Postgres: the signer of a token, one-shot tokens spent once, spent ones forgotten."""

from __future__ import annotations

import time

import asyncpg
import pytest
from slipstream_platform.store import environments
from slipstream_platform.tokens import Credentials, Denied, forget_spent, mint, use_once


async def test_a_token_is_checked_against_its_environment_and_spent_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        key = (await environments.bootstrap_project(conn, "tokens"))["DEVELOPMENT"]
    credentials = Credentials(pool)
    secret = await credentials.access(key)
    assert secret.is_secret and secret.key == environments.key_hash(key)  # tokens are signed with the hash
    env, env_id = secret.environment, secret.environment.id
    token, _ = mint(env, secret.key, ["trigger:tasks:email"], 60, one_shot=True)
    access = await credentials.access(token)
    assert access.scopes == {"trigger:tasks:email"} and access.jti is not None and access.key == secret.key
    async with pool.acquire() as conn:
        async with conn.transaction():
            await use_once(conn, access)
        with pytest.raises(Denied, match="has been used"):
            await use_once(conn, access)
        # A spend whose transaction rolls back leaves the token good.
        other = await credentials.access(mint(env, secret.key, ["trigger:tasks:email"], 60, one_shot=True)[0])
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


async def test_tokens_die_with_the_key_that_minted_them(pool: asyncpg.Pool) -> None:
    from datetime import timedelta

    async with pool.acquire() as conn:
        old_key = (await environments.bootstrap_project(conn, "rotation"))["STAGING"]
        env = await environments.of_project(conn, "rotation", "STAGING")
        old = await Credentials(pool, ttl=0).access(old_key)
        old_token, _ = mint(env, old.key, ["read:runs"], 600)
        # Signed with the key itself (as before migration 0033): not a token of this platform.
        with pytest.raises(Denied, match="invalid public access token"):
            await Credentials(pool, ttl=0).access(mint(env, old_key, ["read:runs"], 600)[0])
        new_key = await environments.rotate_key(conn, env, timedelta(hours=1))
        new = await Credentials(pool, ttl=0).access(new_key)
        new_token, _ = mint(env, new.key, ["read:runs"], 600)
        # During the grace both keys, and the tokens of both, work.
        for credential in (old_key, new_key, old_token, new_token):
            assert (await Credentials(pool, ttl=0).access(credential)).environment.id == env.id
        await conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE key_hash = $1",
                           old.key)
    with pytest.raises(Denied, match="Invalid or Missing API key"):
        await Credentials(pool, ttl=0).access(old_key)
    with pytest.raises(Denied, match="expired or was rotated out"):
        await Credentials(pool, ttl=0).access(old_token)
    assert (await Credentials(pool, ttl=0).access(new_token)).key == new.key
