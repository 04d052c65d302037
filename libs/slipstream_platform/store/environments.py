"""Projects and their environments, and the environments' secret keys (kept as hashes)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import asyncpg
import msgspec

from slipstream_platform.ids import new_id

ENVIRONMENT_TYPES = ("DEVELOPMENT", "STAGING", "PRODUCTION", "PREVIEW")
_KEY_PREFIX = {"DEVELOPMENT": "sk_dev_", "STAGING": "sk_stg_", "PRODUCTION": "sk_prod_", "PREVIEW": "sk_prev_"}


class Environment(msgspec.Struct, frozen=True):
    """An environment as the services use it."""

    id: str
    project_id: str
    type: str
    concurrency_limit: int


def key_hash(key: str) -> str:
    """What the database keeps of a secret key: its SHA-256, hex. Keys are 128 random bits, so a
    fast hash is enough (there is nothing to guess); it also signs the key's public tokens."""
    return hashlib.sha256(key.encode()).hexdigest()


def _display(key: str) -> str:
    return key[: key.index("_", 3) + 1] + "…" + key[-4:]


async def issue_key(conn: asyncpg.Connection | asyncpg.Pool, environment_id: str, env_type: str) -> str:
    """A new secret key of the environment (its other keys stay as they are): returned once, kept hashed."""
    key = _KEY_PREFIX[env_type] + secrets.token_hex(16)
    await conn.execute("INSERT INTO api_keys (key_hash, environment_id, display) VALUES ($1, $2, $3)",
                       key_hash(key), environment_id, _display(key))
    return key


async def bootstrap_project(conn: asyncpg.Connection, name: str) -> dict[str, str]:
    """Create project `name` with its four environments where missing; type -> key of each
    environment made now (the keys of existing ones are not kept, so not returned)."""
    keys: dict[str, str] = {}
    async with conn.transaction():
        project_id = await conn.fetchval(
            "INSERT INTO projects (id, name) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
            new_id("proj"),
            name,
        )
        for env_type in ENVIRONMENT_TYPES:
            env_id = await conn.fetchval(
                "INSERT INTO environments (id, project_id, type) VALUES ($1, $2, $3)"
                " ON CONFLICT (project_id, type) DO NOTHING RETURNING id",
                new_id("env"),
                project_id,
                env_type,
            )
            if env_id is not None:
                keys[env_type] = await issue_key(conn, env_id, env_type)
    return keys


async def by_api_key(conn: asyncpg.Connection | asyncpg.Pool, api_key: str) -> Environment | None:
    """The environment a secret key (not expired) belongs to, or None."""
    row = await conn.fetchrow(
        "SELECT e.id, e.project_id, e.type, e.concurrency_limit FROM api_keys k"
        " JOIN environments e ON e.id = k.environment_id"
        " WHERE k.key_hash = $1 AND (k.expires_at IS NULL OR k.expires_at > now())",
        key_hash(api_key),
    )
    return Environment(**dict(row)) if row else None


async def with_signers(
    conn: asyncpg.Connection | asyncpg.Pool, environment_id: str
) -> tuple[Environment, list[str]] | None:
    """The environment with this id and the hashes of its keys that have not expired, newest
    first (each verifies the tokens its key's requests minted), or None."""
    rows = await conn.fetch(
        "SELECT e.id, e.project_id, e.type, e.concurrency_limit, k.key_hash FROM environments e"
        " LEFT JOIN api_keys k ON k.environment_id = e.id AND (k.expires_at IS NULL OR k.expires_at > now())"
        " WHERE e.id = $1 ORDER BY k.created_at DESC",
        environment_id,
    )
    if not rows:
        return None
    first = rows[0]
    env = Environment(first["id"], first["project_id"], first["type"], first["concurrency_limit"])
    return env, [r["key_hash"] for r in rows if r["key_hash"] is not None]


async def of_project(conn: asyncpg.Connection | asyncpg.Pool, project: str | None, env_type: str) -> Environment:
    """The environment of this type in the named project (or in the only project); LookupError says why not."""
    rows = await conn.fetch(
        "SELECT e.id, e.project_id, e.type, e.concurrency_limit, p.name FROM environments e"
        " JOIN projects p ON p.id = e.project_id WHERE e.type = $1 AND ($2::text IS NULL OR p.name = $2)"
        " ORDER BY p.name",
        env_type,
        project,
    )
    if not rows:
        raise LookupError(f"no {env_type} environment" + (f" in project {project!r}" if project else ""))
    if len(rows) > 1:
        names = ", ".join(r["name"] for r in rows)
        raise LookupError(f"several projects have a {env_type} environment ({names}): name one with --project")
    r = rows[0]
    return Environment(r["id"], r["project_id"], r["type"], r["concurrency_limit"])


async def rotate_key(conn: asyncpg.Connection, environment: Environment, grace: timedelta) -> str:
    """A new key for the environment; its current keys stop working after `grace` (those that
    expire sooner keep their time). The new key is returned once."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'), now() + $2::interval)"
            " WHERE environment_id = $1", environment.id, grace)
        return await issue_key(conn, environment.id, environment.type)


async def keys_of(conn: asyncpg.Connection | asyncpg.Pool, environment_id: str) -> list[asyncpg.Record]:
    """The environment's keys as they can be shown (display, created, expires), newest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT display, created_at, expires_at, expires_at IS NOT NULL AND expires_at <= now() AS expired"
        " FROM api_keys WHERE environment_id = $1 ORDER BY created_at DESC", environment_id)
    return rows


async def limits(conn: asyncpg.Connection | asyncpg.Pool, environment_id: str) -> asyncpg.Record:
    """The environment's concurrency limit, burst factor and default region."""
    row: asyncpg.Record = await conn.fetchrow(
        "SELECT id, type, concurrency_limit, burst_factor, default_region FROM environments WHERE id = $1",
        environment_id,
    )
    return row


async def set_limits(
    conn: asyncpg.Connection | asyncpg.Pool, environment_id: str, *, concurrency_limit: int | None,
    burst_factor: float | None, default_region: str | None = None,
) -> asyncpg.Record:
    """Change the limits or the default region (None keeps a value); the next dispatch uses them."""
    row: asyncpg.Record = await conn.fetchrow(
        "UPDATE environments SET concurrency_limit = coalesce($2, concurrency_limit),"
        " burst_factor = coalesce($3, burst_factor), default_region = coalesce($4, default_region) WHERE id = $1"
        " RETURNING id, type, concurrency_limit, burst_factor, default_region",
        environment_id,
        concurrency_limit,
        burst_factor,
        default_region,
    )
    return row
