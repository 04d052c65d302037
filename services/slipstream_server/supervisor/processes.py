"""Worker processes: started ahead of time, one attempt at a time, replaced when they die."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from typing import Any

from slipstream_core import ipc
from slipstream_platform import telemetry
from slipstream_platform.errors import PlatformError

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class TaskModuleError(PlatformError):
    """The task module failed to import in a worker process."""


class WorkerProcess:
    """One warm child process that imports the tasks and runs attempts sent to it."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.module = module
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self, timeout: float = 120) -> ipc.Ready:
        """Start the process and wait until it has imported the tasks."""
        parent, child = socket.socketpair()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "slipstream_server.supervisor.worker_main", str(child.fileno()), self.module,
                pass_fds=[child.fileno()], env=self.env, stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
        self.reader, self.writer = await asyncio.open_connection(sock=parent)
        message = await asyncio.wait_for(ipc.read(self.reader), timeout)
        if isinstance(message, ipc.LoadFailed):
            await self.stop()
            raise TaskModuleError(f"importing task module {self.module!r} failed:\n{message.error}")
        if not isinstance(message, ipc.Ready):
            code = await self.proc.wait()
            raise TaskModuleError(f"worker process for {self.module!r} exited with code {code} while starting")
        return message

    def send(self, message: ipc.Execute) -> bool:
        """Hand the process an attempt (written at once, before anything sent later); False if gone."""
        assert self.writer is not None
        try:
            self.writer.write(ipc.frame(message))
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def outcome(self, logs: list[dict[str, Any]]) -> ipc.Outcome | None:
        """Wait for the attempt's outcome, appending its log lines to `logs`; None if the process died."""
        assert self.writer is not None and self.reader is not None
        try:
            await self.writer.drain()
        except ConnectionError:
            return None
        while True:
            received = await ipc.read(self.reader)
            if isinstance(received, ipc.LogLine):
                logs.append({"level": received.level, "message": received.message,
                             "attributes": received.attributes, "timestamp": received.timestamp})
            elif isinstance(received, ipc.Spans):
                telemetry.store_spans(received.spans)
            elif isinstance(received, ipc.Outcome):
                return received
            else:
                return None

    async def cancel(self, run_id: str) -> None:
        """Tell the process that the run it executes was canceled."""
        if self.writer is None:
            return
        with contextlib.suppress(ConnectionError):
            self.writer.write(ipc.frame(ipc.Cancel(run_id=run_id)))
            await self.writer.drain()

    def resident_bytes(self) -> int | None:
        """The process's resident memory (Linux), or None if it cannot be read."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/statm") as statm:
                return int(statm.read().split()[1]) * PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return None

    async def exit_code(self) -> int | None:
        """The exit code of a process that died (negative: killed by that signal)."""
        if self.proc is None:
            return None
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.proc.wait(), 5)
        return None

    async def stop(self, grace: float = 5) -> None:
        """Close its socket (it exits by itself), then kill it if it lingers."""
        if self.writer is not None:
            self.writer.close()
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            self.kill()
            await self.proc.wait()

    def kill(self) -> None:
        """Kill it at once."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


def child_environment(api_url: str, secret_key: str, realtime_url: str) -> dict[str, str]:
    """Environment of worker processes: the SDK inside tasks talks to the same platform."""
    env = dict(os.environ)
    env.update(
        SLIPSTREAM_API_URL=api_url,
        SLIPSTREAM_SECRET_KEY=secret_key,
        SLIPSTREAM_REALTIME_URL=realtime_url or api_url,
        PYTHONUNBUFFERED="1",
    )
    return env
