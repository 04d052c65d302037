"""Postgres: the connection pool and forward-only migrations."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Errors that mean "Postgres is not reachable right now": worth retrying, never the caller's fault.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # Shut down, crashed or starting up (57P01-57P03), and canceled statements.
    asyncpg.exceptions.OperatorInterventionError,
    # A connection that broke mid-statement and went back to the pool before its loss was
    # seen ("cannot switch to state ..."); the pool replaces it.
    asyncpg.exceptions.InternalClientError,
)

# Serialises concurrent `migrate` calls (several services may start at once).
_MIGRATION_LOCK = 7_300_001


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    folder = resources.files("slipstream_platform") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations this database has not seen; return their names."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done:
                continue
            log.info("applying migration %s", name)
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied.append(name)
    return applied


async def _keep_session(conn: asyncpg.Connection) -> None:
    # The stores keep no session state (no LISTEN, SET or session-level locks), so a
    # connection goes back to the pool as it is, without a reset round trip.
    return None


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool; jsonb and json columns travel as JSON text (never parsed here)."""
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, reset=_keep_session)
    assert pool is not None
    return pool


async def connect_when_ready(dsn: str, timeout: float = 60) -> asyncpg.Connection:
    """Connect, waiting while a just-started server is still starting up or recovering."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await asyncpg.connect(dsn)
        except (asyncpg.CannotConnectNowError, OSError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def ensure_database(admin_dsn: str, name: str) -> None:
    """CREATE DATABASE `name` unless it exists (connecting through `admin_dsn`)."""
    conn = await connect_when_ready(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
