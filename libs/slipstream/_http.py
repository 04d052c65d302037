"""The SDK's HTTP/1.1 client for the API: keep-alive connections per event loop, JSON bodies.

A trigger is one small request and one small answer; aiohttp's client spends about 300 µs of
CPU on one, this one about 150 µs (docs/benchmarks.md), and that CPU is the user's. It speaks
what the API needs: requests with a Content-Length body, answers with a Content-Length or
chunked body, keep-alive, `Connection: close`, http and https. Websockets (realtime) still
use aiohttp.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

# Idle connections older than this are closed rather than reused: servers close idle
# keep-alive connections too (aiohttp after 75 s), and a request must not race that close.
IDLE_SECONDS = 15.0
MAX_IDLE_PER_HOST = 32
_MAX_HEADER_LINES = 100


class TransportError(Exception):
    """The request could not be sent or its answer could not be read."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        # False: the server cannot have seen the request (safe to send again).
        self.sent = sent


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        return (now - self.idle_since < IDLE_SECONDS and not self.reader.at_eof()
                and not self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Keep-alive connections of one event loop, per (scheme, host, port)."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, *,
        timeout: float, connect_timeout: float,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; the answer's status, headers (lower-case names) and body.
        TransportError if it failed."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"not an http(s) URL: {url!r}", sent=False)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "User-Agent: slipstream-python",
                 f"Content-Length: {len(body or b'')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn = await self._connection(key, connect_timeout)
        try:
            async with asyncio.timeout(timeout):
                conn.writer.write(head + body if body else head)
                status, keep_alive, answer_headers, content = await _read_response(conn.reader)
        except TransportError:
            conn.close()
            raise
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            conn.close()
            raise TransportError(f"{type(exc).__name__}: {exc}", sent=True) from exc
        if keep_alive:
            self._release(key, conn)
        else:
            conn.close()
        return status, answer_headers, content

    async def _connection(self, key: tuple[str, str, int], connect_timeout: float) -> _Connection:
        now = asyncio.get_running_loop().time()
        idle = self._idle.get(key, [])
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        scheme, host, port = key
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(host, port, ssl=context)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to {host}:{port}: {exc}", sent=False) from exc
        return _Connection(reader, writer)

    def _release(self, key: tuple[str, str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= MAX_IDLE_PER_HOST:
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        idle.append(conn)

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, dict[str, str], bytes]:
    """Status, whether the connection stays open, the headers and the body of one answer."""
    status_line = await reader.readline()
    if not status_line:
        raise TransportError("the server closed the connection before answering", sent=True)
    version, _, rest = status_line.decode("latin-1").partition(" ")
    try:
        status = int(rest[:3])
    except ValueError:
        raise TransportError(f"not an HTTP answer: {status_line[:80]!r}", sent=True) from None
    length: int | None = None
    chunked = False
    keep_alive = version == "HTTP/1.1"
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, raw = line.decode("latin-1").partition(":")
        name, raw = name.strip().lower(), raw.strip()
        headers[name] = raw
        value = raw.lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            keep_alive = value != "close" and (keep_alive or value == "keep-alive")
    else:
        raise TransportError("the answer has too many header lines", sent=True)
    if chunked:
        return status, keep_alive, headers, await _read_chunked(reader)
    if length is not None:
        return status, keep_alive, headers, await reader.readexactly(length)
    if status in (204, 304) or 100 <= status < 200:
        return status, keep_alive, headers, b""
    return status, False, headers, await reader.read()  # delimited by the connection's end


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
