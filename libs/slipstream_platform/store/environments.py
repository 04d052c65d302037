"""Projects and their environments, each with one secret key."""

from __future__ import annotations

import secrets

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


async def bootstrap_project(conn: asyncpg.Connection, name: str) -> dict[str, str]:
    """Create project `name` with its four environments if missing; return type -> key."""
    async with conn.transaction():
        project_id = await conn.fetchval(
            "INSERT INTO projects (id, name) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
            new_id("proj"),
            name,
        )
        for env_type in ENVIRONMENT_TYPES:
            await conn.execute(
                "INSERT INTO environments (id, project_id, type, api_key) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (project_id, type) DO NOTHING",
                new_id("env"),
                project_id,
                env_type,
                _KEY_PREFIX[env_type] + secrets.token_hex(16),
            )
        rows = await conn.fetch(
            "SELECT type, api_key FROM environments WHERE project_id = $1", project_id
        )
    return {r["type"]: r["api_key"] for r in rows}


async def by_api_key(conn: asyncpg.Connection | asyncpg.Pool, api_key: str) -> Environment | None:
    """The environment a secret key belongs to, or None."""
    row = await conn.fetchrow(
        "SELECT id, project_id, type, concurrency_limit FROM environments WHERE api_key = $1",
        api_key,
    )
    return Environment(**dict(row)) if row else None


async def with_key(conn: asyncpg.Connection | asyncpg.Pool, environment_id: str) -> tuple[Environment, str] | None:
    """The environment with this id and its secret key (which signs its tokens), or None."""
    row = await conn.fetchrow(
        "SELECT id, project_id, type, concurrency_limit, api_key FROM environments WHERE id = $1",
        environment_id,
    )
    if row is None:
        return None
    fields = dict(row)
    key = fields.pop("api_key")
    return Environment(**fields), key


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
