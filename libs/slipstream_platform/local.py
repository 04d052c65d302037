"""A whole platform on one machine: embedded NATS and Postgres, and the five services as
processes. Used by `slipstream dev`, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg

from slipstream_platform import db
from slipstream_platform.embedded import EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres, free_port
from slipstream_platform.errors import EmbeddedServerError
from slipstream_platform.store import environments

SERVICES = ("trigger_api", "realtime", "queue_manager", "scheduler", "supervisor")


class LocalPlatform:
    """Starts and stops everything under `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        api_port: int | None = None,
        realtime_port: int | None = None,
        fast_unsafe: bool = False,
        service_env: dict[str, str] | None = None,
        database: str = "slipstream",
        cluster: int = 1,
    ) -> None:
        """`cluster` 3 (or more) runs NATS as a JetStream cluster of that many nodes, with every
        stream replicated 3 times; 1 runs one nats-server."""
        self.data_dir = Path(data_dir).resolve()
        self.nats: EmbeddedNats | EmbeddedNatsCluster = (
            EmbeddedNatsCluster(self.data_dir / "nats-cluster", cluster) if cluster > 1
            else EmbeddedNats(self.data_dir / "nats"))
        self.postgres = EmbeddedPostgres(self.data_dir / "pg", fast_unsafe=fast_unsafe)
        self.database = database
        self.api_port = api_port or free_port()
        self.realtime_port = realtime_port or free_port()
        self.extra_env = {**({"SLIPSTREAM_NATS_REPLICAS": "3"} if cluster > 1 else {}), **(service_env or {})}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.logs = self.data_dir / "logs"

    @property
    def database_url(self) -> str:
        return self.postgres.dsn(self.database)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def realtime_url(self) -> str:
        return f"http://127.0.0.1:{self.realtime_port}"

    def start_servers(self) -> None:
        """Start NATS and Postgres, create the database and apply the migrations."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.nats.start()
        self.postgres.start()
        asyncio.run(self._prepare_database())

    async def _prepare_database(self) -> None:
        await db.ensure_database(self.postgres.dsn(), self.database)
        conn = await asyncpg.connect(self.database_url)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()

    def bootstrap(self, project: str = "default") -> dict[str, str]:
        """Create a project with its four environments if missing; type -> a secret key of each.
        The database keeps only hashes of keys, so the keys handed out here are kept in
        `keys-<database>-<project>.json` (mode 0600) in the data folder for the next start; an
        environment whose kept key is gone or expired gets a new one."""
        path = self.data_dir / f"keys-{self.database}-{project}.json"
        known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

        async def run() -> dict[str, str]:
            conn = await asyncpg.connect(self.database_url)
            try:
                keys = await environments.bootstrap_project(conn, project)
                for env_type in environments.ENVIRONMENT_TYPES:
                    kept = known.get(env_type)
                    if env_type in keys:
                        continue
                    if kept and await environments.by_api_key(conn, kept) is not None:
                        keys[env_type] = kept
                    else:
                        env = await environments.of_project(conn, project, env_type)
                        keys[env_type] = await environments.issue_key(conn, env.id, env_type)
                return keys
            finally:
                await conn.close()

        keys = asyncio.run(run())
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(keys, out)
        return keys

    def env_for(self, name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment variables a service process is started with."""
        port = {"trigger_api": self.api_port, "realtime": self.realtime_port}.get(name) or free_port()
        env = dict(os.environ)
        env.update(
            SLIPSTREAM_DATABASE_URL=self.database_url,
            SLIPSTREAM_NATS_URL=self.nats.url,
            SLIPSTREAM_HTTP_HOST="127.0.0.1",
            SLIPSTREAM_HTTP_PORT=str(port),
            SLIPSTREAM_API_URL=self.api_url,
            SLIPSTREAM_REALTIME_URL=self.realtime_url,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def start_service(
        self, name: str, extra_env: dict[str, str] | None = None, *, key: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start one service process (`key` names it when several of one kind run)."""
        key = key or name
        env = self.env_for(name, extra_env)
        self.ports[key] = int(env["SLIPSTREAM_HTTP_PORT"])
        log = open(self.logs / f"{key}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", f"slipstream_server.{name}"], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=os.getcwd(),
        )
        log.close()
        self.processes[key] = proc
        return proc

    def wait_healthy(self, keys: list[str] | None = None, timeout: float = 60) -> None:
        """Wait until each service answers /healthz; raise with its log if it exits."""
        deadline = time.monotonic() + timeout
        for key in keys or list(self.processes):
            proc, port = self.processes[key], self.ports[key]
            while True:
                if proc.poll() is not None:
                    tail = (self.logs / f"{key}.log").read_text(errors="replace")[-3000:]
                    raise EmbeddedServerError(f"{key} exited with code {proc.returncode}:\n{tail}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    log = self.logs / f"{key}.log"
                    raise EmbeddedServerError(f"{key} not healthy within {timeout:.0f}s; see {log}")
                time.sleep(0.1)

    def start_services(self, tasks: str | None, secret_key: str, *, concurrency: int = 4) -> None:
        """Start the four platform services and, if `tasks` is given, a supervisor."""
        for name in ("trigger_api", "realtime", "queue_manager", "scheduler"):
            self.start_service(name)
        if tasks:
            self.start_service("supervisor", {"SLIPSTREAM_TASKS": tasks,
                                              "SLIPSTREAM_SECRET_KEY": secret_key,
                                              "SLIPSTREAM_CONCURRENCY": str(concurrency)})
        self.wait_healthy()

    def stop_service(self, key: str, *, kill: bool = False, timeout: float = 40) -> None:
        """SIGTERM (or SIGKILL) one service and wait for it to exit."""
        proc = self.processes.pop(key, None)
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Stop the services (supervisors first), then NATS and Postgres."""
        order = sorted(self.processes, key=lambda k: not k.startswith("supervisor"))
        for key in order:
            self.stop_service(key)
        self.nats.stop()
        self.postgres.stop()
