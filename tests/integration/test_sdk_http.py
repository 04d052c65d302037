"""The SDK's HTTP/1.1 client against a real aiohttp server: keep-alive, bodies, closes, TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from slipstream._http import Pool, TransportError

SERVER: web.AppKey[Server] = web.AppKey("server")


class Server:
    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.url = ""
        self.runner: web.AppRunner | None = None


async def echo(request: web.Request) -> web.StreamResponse:
    request.app[SERVER].peers.append(request.transport.get_extra_info("peername") if request.transport else None)
    body = await request.read()
    if request.path == "/chunked":
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"parts": ', b"[1, 2, ", b"3]}"):
            await response.write(part)
        await response.write_eof()
        return response
    if request.path == "/close":
        return web.Response(body=b'"bye"', headers={"Connection": "close"})
    if request.path == "/slow":
        await asyncio.sleep(2)
    return web.json_response({"method": request.method, "got": body.decode(), "auth": request.headers.get("x-key")},
                             status=201 if request.method == "POST" else 200)


async def start(context: ssl.SSLContext | None = None) -> Server:
    server = Server()
    app = web.Application()
    app[SERVER] = server
    app.router.add_route("*", "/{tail:.*}", echo)
    server.runner = web.AppRunner(app, access_log=None)
    await server.runner.setup()
    site = web.TCPSite(server.runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    return server


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    running = await start()
    yield running
    assert running.runner is not None
    await running.runner.cleanup()


async def test_requests_reuse_one_connection_and_carry_headers_and_body(server: Server) -> None:
    pool = Pool()
    try:
        first = await pool.request("POST", server.url + "/a?x=1", {"x-key": "k"}, b'{"n": 1}', timeout=5,
                                   connect_timeout=5)
        second = await pool.request("GET", server.url + "/b", {}, None, timeout=5, connect_timeout=5)
    finally:
        pool.close()
    assert (first[0], first[2]) == (201, b'{"method": "POST", "got": "{\\"n\\": 1}", "auth": "k"}')
    assert first[1]["content-type"].startswith("application/json")  # the answer headers, names lower-cased
    assert second[0] == 200 and b'"GET"' in second[2]
    assert server.peers[0] == server.peers[1]  # the same client port: kept alive


async def test_a_chunked_answer_is_read_whole(server: Server) -> None:
    pool = Pool()
    try:
        status, _, body = await pool.request("GET", server.url + "/chunked", {}, None, timeout=5, connect_timeout=5)
        again = await pool.request("GET", server.url + "/b", {}, None, timeout=5, connect_timeout=5)
    finally:
        pool.close()
    assert (status, body) == (200, b'{"parts": [1, 2, 3]}')
    assert again[0] == 200 and server.peers[0] == server.peers[1]


async def test_connection_close_and_a_server_restart_open_new_connections(server: Server) -> None:
    pool = Pool()
    try:
        closing = await pool.request("GET", server.url + "/close", {}, None, timeout=5, connect_timeout=5)
        assert (closing[0], closing[2]) == (200, b'"bye"')
        await pool.request("GET", server.url + "/b", {}, None, timeout=5, connect_timeout=5)
        assert server.peers[0] != server.peers[1]
        # The server goes away and comes back on the same port: the idle connection is not reused.
        assert server.runner is not None
        port = int(server.url.rsplit(":", 1)[1])
        await server.runner.cleanup()
        again = Server()
        app = web.Application()
        app[SERVER] = again
        app.router.add_route("*", "/{tail:.*}", echo)
        again.runner = web.AppRunner(app, access_log=None)
        await again.runner.setup()
        await web.TCPSite(again.runner, "127.0.0.1", port).start()
        try:
            assert (await pool.request("GET", server.url + "/b", {}, None, timeout=5, connect_timeout=5))[0] == 200
        finally:
            await again.runner.cleanup()
    finally:
        pool.close()


async def test_failures_are_transport_errors_that_say_whether_the_request_left(server: Server) -> None:
    pool = Pool()
    try:
        with pytest.raises(TransportError) as refused:
            await pool.request("GET", "http://127.0.0.1:9/", {}, None, timeout=5, connect_timeout=5)
        assert not refused.value.sent
        with pytest.raises(TransportError) as slow:
            await pool.request("GET", server.url + "/slow", {}, None, timeout=0.3, connect_timeout=5)
        assert slow.value.sent
        with pytest.raises(TransportError, match="not an http"):
            await pool.request("GET", "ftp://127.0.0.1/", {}, None, timeout=5, connect_timeout=5)
    finally:
        pool.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
async def test_https_verifies_the_server_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await start(context)
    try:
        with pytest.raises(TransportError):
            await Pool().request("GET", server.url + "/b", {}, None, timeout=5, connect_timeout=5)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the default context trusts it now
        pool = Pool()
        try:
            status, _, body = await pool.request("GET", server.url + "/b", {}, None, timeout=5, connect_timeout=5)
        finally:
            pool.close()
        assert status == 200 and b'"GET"' in body
    finally:
        assert server.runner is not None
        await server.runner.cleanup()
