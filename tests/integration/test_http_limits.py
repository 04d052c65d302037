"""The limits every service's HTTP server applies (`SLIPSTREAM_HTTP_*`, `SLIPSTREAM_WS_*`): slow
clients are cut off, oversized headers and websocket messages refused. Real sockets against the
same runner, middlewares and websocket class the services use, with short limits."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from slipstream_platform.http import body_deadline, json_errors
from slipstream_platform.service import http_runner
from slipstream_platform.settings import RealtimeSettings
from slipstream_server.realtime.sockets import open_socket, send

SETTINGS = RealtimeSettings(http_idle_timeout=0.5, http_body_timeout=0.5, http_max_header_bytes=1024,
                            http_max_headers=16, ws_max_message_bytes=256, ws_send_timeout=0.5)


class Server:
    def __init__(self) -> None:
        self.dropped = asyncio.Event()
        self.closed_with: int | None = None


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, int]]:
    state = Server()

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"bytes": len(await request.read())})

    async def flood(request: web.Request) -> web.StreamResponse:
        """Send 256 KB messages until the client's socket is dropped for not reading."""
        ws = open_socket(SETTINGS)
        await ws.prepare(request)
        for _ in range(2000):  # at most 500 MB: far more than any socket buffers
            if not await send(ws, "x" * 262_144, SETTINGS.ws_send_timeout):
                state.dropped.set()
                break
        return ws

    async def listen(request: web.Request) -> web.StreamResponse:
        ws = open_socket(SETTINGS)
        await ws.prepare(request)
        async for _ in ws:
            pass
        state.closed_with = ws.close_code
        return ws

    app = web.Application(middlewares=[json_errors, body_deadline(SETTINGS.http_body_timeout)])
    app.router.add_post("/echo", echo)
    app.router.add_get("/flood", flood)
    app.router.add_get("/listen", listen)
    runner = http_runner(app, SETTINGS)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield state, port
    finally:
        await runner.cleanup()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    raw = await asyncio.wait_for(reader.read(65536), timeout=10)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_a_body_sent_too_slowly_gets_a_408_and_the_connection_closes(server: tuple[Server, int]) -> None:
    _, port = server
    reader, writer = await _connect(port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    started = time.monotonic()
    status, body = await _read_response(reader)
    assert status == 408 and "did not arrive within 0.5 s" in json.loads(body)["error"]
    assert time.monotonic() - started < 5
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed
    writer.close()


async def test_a_body_sent_at_once_is_read_by_the_handler(server: tuple[Server, int]) -> None:
    _, port = server
    async with aiohttp.ClientSession() as http, http.post(f"http://127.0.0.1:{port}/echo", data=b"x" * 5000) as answer:
        assert answer.status == 200 and await answer.json() == {"bytes": 5000}


async def test_a_client_that_never_finishes_its_headers_is_cut_off(server: tuple[Server, int]) -> None:
    _, port = server
    reader, writer = await _connect(port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    assert time.monotonic() - started < 5
    writer.close()


@pytest.mark.parametrize("headers", [{"X-Big": "y" * 2000}, {f"X-H{i}": "1" for i in range(40)}],
                         ids=["a header over the limit", "too many headers"])
async def test_oversized_headers_are_refused(server: tuple[Server, int], headers: dict[str, str]) -> None:
    _, port = server
    reader, writer = await _connect(port)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{lines}\r\n".encode())
    status, _ = await _read_response(reader)
    assert status in (400, 431)
    writer.close()


async def test_a_websocket_message_over_the_limit_closes_the_socket(server: tuple[Server, int]) -> None:
    state, port = server
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{port}/listen") as ws:
        await ws.send_str("small")
        await ws.send_str("z" * 1000)
        message = await asyncio.wait_for(ws.receive(), timeout=10)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_a_websocket_client_that_stops_reading_is_dropped(server: tuple[Server, int]) -> None:
    state, port = server
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
    client.send(b"GET /flood HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    try:
        # The client reads nothing: the server's sends back up, and after 0.5 s it gives up on it.
        await asyncio.wait_for(state.dropped.wait(), timeout=30)
    finally:
        client.close()
