"""Running a service: open NATS, Postgres and HTTP in one AsyncExitStack, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from typing import Any, Generic, TypeVar

import asyncpg
from aiohttp import web
from nats.aio.client import Client as NATS

from slipstream_platform import bus as bus_module
from slipstream_platform import db, logformat, metrics, telemetry
from slipstream_platform.bus import Bus
from slipstream_platform.http import body_deadline, json_errors, json_response
from slipstream_platform.settings import CommonSettings, load_settings, loop_factory

log = logging.getLogger(__name__)

S = TypeVar("S", bound=CommonSettings)


class Service(Generic[S]):
    """What a service's setup function receives: its connections, HTTP app and tasks."""

    def __init__(self, name: str, settings: S) -> None:
        self.name = name
        self.settings = settings
        self.stop = asyncio.Event()
        self.app = web.Application(
            middlewares=[json_errors, body_deadline(settings.http_body_timeout)],
            client_max_size=getattr(settings, "max_body_bytes", 1024 * 1024),
        )
        self.app.router.add_get("/livez", self._live)
        self.app.router.add_get("/readyz", self._ready)
        self.app.router.add_get("/healthz", self._ready)  # the earlier name of /readyz
        self.app.router.add_get("/metrics", self._metrics)
        # Read before each scrape (the queue-manager's gauges from Postgres).
        self.before_scrape: list[Callable[[], Awaitable[None]]] = []
        self.pool: asyncpg.Pool
        self.nc: NATS
        self.bus: Bus
        self.port = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self.failed = False

    async def _metrics(self, request: web.Request) -> web.Response:
        for refresh in self.before_scrape:
            try:
                async with asyncio.timeout(5):
                    await refresh()
            except Exception:
                log.warning("a metrics refresh failed; serving the last values", exc_info=True)
        return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def _live(self, request: web.Request) -> web.Response:
        """The process runs and its event loop answers (restart it if not)."""
        return json_response({"status": "ok", "service": self.name})

    async def _ready(self, request: web.Request) -> web.Response:
        """Postgres answers within 2 s and NATS is connected (send it no work if not)."""
        away = []
        try:
            async with asyncio.timeout(2):
                await self.pool.fetchval("SELECT 1")
        except Exception:
            away.append("postgres")
        if not self.nc.is_connected:
            away.append("nats")
        body: dict[str, Any] = {"status": "degraded" if away else "ok", "service": self.name}
        if away:
            body["unavailable"] = away
        return json_response(body, 503 if away else 200)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a background loop; if it dies with an error, the service stops."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._loop_done)
        self._tasks.append(task)

    def _loop_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: loop %s died", self.name, task.get_name(), exc_info=task.exception())
            self.failed = True
            self.stop.set()

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def run_service(
    name: str,
    settings: S,
    setup: Callable[[Service[S]], Awaitable[None]],
    *,
    pool_size: int = 10,
) -> bool:
    """Serve until SIGTERM or SIGINT, then shut down cleanly; False if a loop died."""
    service = Service(name, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop.set)
    telemetry.setup(name, settings.otel_exporter)
    async with AsyncExitStack() as stack:
        stack.callback(telemetry.shutdown)
        service.pool = await db.create_pool(settings.database_url, max_size=pool_size)
        metrics.pool_collector.pool = service.pool
        stack.push_async_callback(service.pool.close)
        service.nc = await bus_module.connect(settings.nats_url, name)
        stack.push_async_callback(service.nc.drain)
        await bus_module.ensure_streams_patiently(service.nc.jetstream(), settings.nats_replicas)
        service.bus = Bus(service.nc)
        stack.push_async_callback(service.bus.settle)
        if telemetry.storing():
            service.spawn(telemetry.flush_spans(service.pool), "spans")
        await setup(service)
        runner = http_runner(service.app, settings)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        service.port = sockets[0].getsockname()[1] if sockets else settings.http_port
        log.info("%s listening on http://%s:%s", name, settings.http_host, service.port)
        stack.push_async_callback(service._cancel_tasks)
        for hook in service.on_shutdown:
            stack.push_async_callback(hook)
        await service.stop.wait()
        log.info("%s stopping", name)
    return not service.failed


def http_runner(app: web.Application, settings: CommonSettings) -> web.AppRunner:
    """The app's runner with the settings' connection limits (`SLIPSTREAM_HTTP_*`). After an
    answer sent before the whole body came (a 408, a 413), the rest is read for at most a second,
    not aiohttp's ten, before the connection closes."""
    return web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=settings.http_idle_timeout,
                         max_line_size=settings.http_max_header_bytes, max_field_size=settings.http_max_header_bytes,
                         max_headers=settings.http_max_headers, lingering_time=1.0)


def serve_forever(
    name: str,
    settings_type: type[S],
    setup: Callable[[Service[S]], Awaitable[None]],
    environ: Mapping[str, str],
    *,
    pool_size: int = 10,
) -> None:
    """A service's whole `main`: settings from `environ`, logging, then `run_service`."""
    settings = load_settings(settings_type, environ)
    logformat.configure(name, settings.log_level, settings.log_format)
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        ok = runner.run(run_service(name, settings, setup, pool_size=pool_size))
    if not ok:
        raise SystemExit(1)
