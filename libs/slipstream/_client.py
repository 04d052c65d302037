"""The SDK's calls to the API (keep-alive connections per event loop, `_http`) and the aiohttp
session its websockets use; both are closed with their loop."""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import aiohttp
import msgspec
from slipstream_proto import ErrorBody

from slipstream import _config, _http
from slipstream._codec import encoder
from slipstream._tracing import inject
from slipstream.errors import ApiConnectionError, api_error

T = TypeVar("T")

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)
_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncIterator[None]] = (
    weakref.WeakKeyDictionary()
)
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _http.Pool] = weakref.WeakKeyDictionary()
_pool_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncIterator[None]] = (
    weakref.WeakKeyDictionary()
)
_encoder = encoder  # Structs, dataclasses and pydantic models as payloads
_error_decoder = msgspec.json.Decoder(ErrorBody)


async def _close_with_loop(session: aiohttp.ClientSession) -> AsyncIterator[None]:
    # asyncio.run() finalises async generators before closing its loop: that closes us.
    try:
        yield
    finally:
        await session.close()


async def session() -> aiohttp.ClientSession:
    """This event loop's aiohttp session (websockets; created on first use)."""
    loop = asyncio.get_running_loop()
    current = _sessions.get(loop)
    if current is None or current.closed:
        current = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60, connect=10),
            connector=aiohttp.TCPConnector(limit=100),
        )
        _sessions[loop] = current
        closer = _close_with_loop(current)
        await closer.__anext__()
        _closers[loop] = closer
    return current


async def _pool() -> _http.Pool:
    """This event loop's keep-alive connections to the API."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = _http.Pool()
        # asyncio.run() finalises async generators before closing its loop: that closes them.
        closer = _close_pool_with_loop(pool)
        await closer.__anext__()
        _pool_closers[loop] = closer
    return pool


async def _close_pool_with_loop(pool: _http.Pool) -> AsyncIterator[None]:
    try:
        yield
    finally:
        pool.close()


async def aclose() -> None:
    """Close this event loop's connections now."""
    loop = asyncio.get_running_loop()
    pool = _pools.pop(loop, None)
    _pool_closers.pop(loop, None)
    if pool is not None:
        pool.close()
    current = _sessions.pop(loop, None)
    _closers.pop(loop, None)
    if current is not None:
        await current.close()


def _headers(config: _config.ClientConfig, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {config.secret_key}", "Content-Type": "application/json"}
    if extra:
        headers.update(extra)
    inject(headers)  # the caller's trace, where OpenTelemetry is installed and a span is current
    return headers


# Statuses worth sending the same request again for (the API or its backing services were busy).
_RETRY_STATUSES = frozenset({502, 503, 504})
_RETRY_DELAYS = (0.2, 0.5, 1.0)
_RATE_LIMIT_RETRIES = 3
_RATE_LIMIT_MAX_WAIT = 60.0


def _rate_limit_wait(headers: dict[str, str]) -> float:
    """Seconds until a 429's key may call again: `Retry-After`, else `x-ratelimit-reset` (Unix
    ms), with a little jitter so that many waiting callers do not all come back at once."""
    try:
        wait = float(headers["retry-after"])
    except (KeyError, ValueError):
        try:
            wait = int(headers["x-ratelimit-reset"]) / 1000 - time.time()
        except (KeyError, ValueError):
            wait = 1.0
    return min(_RATE_LIMIT_MAX_WAIT, max(0.05, wait)) * random.uniform(1.0, 1.2)


async def request(
    method: str, path: str, result_type: type[T], body: Any = None, *, request_id: str | None = None
) -> T:
    """Call the API and decode its answer into `result_type`; typed errors otherwise.

    With a `request_id` (triggers send one), a request that fails on the network or with a
    502/503/504 is sent again with the same id, so the server never creates a second run; a
    GET is sent again the same way.
    """
    return (await request_with_headers(method, path, result_type, body, request_id=request_id))[0]


async def request_with_headers(
    method: str, path: str, result_type: type[T], body: Any = None, *, request_id: str | None = None
) -> tuple[T, dict[str, str]]:
    """`request`, and the answer's headers (lower-case names)."""
    config = _config.current()
    pool = await _pool()
    data = _encoder.encode(body) if body is not None else None
    headers = _headers(config, {"x-slipstream-request-id": request_id} if request_id else None)
    # A GET changes nothing, and a request with a request id is applied once: both are safe to send again.
    retries = _RETRY_DELAYS if request_id or method == "GET" else ()
    # A 429 did nothing at all: any request waits for its key's reset and goes again.
    limited = 0
    attempt = 0
    while True:
        try:
            status, answer_headers, content = await pool.request(method, config.api_url + path, headers, data,
                                                                 timeout=60, connect_timeout=10)
        except _http.TransportError as exc:
            if attempt < len(retries):
                await asyncio.sleep(retries[attempt])
                attempt += 1
                continue
            raise ApiConnectionError(f"could not reach the API at {config.api_url}: {exc}") from exc
        if status in _RETRY_STATUSES and attempt < len(retries):
            await asyncio.sleep(retries[attempt])
            attempt += 1
            continue
        if status == 429 and limited < _RATE_LIMIT_RETRIES:
            await asyncio.sleep(_rate_limit_wait(answer_headers))
            limited += 1
            continue
        break
    if status >= 400:
        try:
            message = _error_decoder.decode(content).error
        except msgspec.DecodeError:
            message = content.decode(errors="replace")[:500] or f"HTTP {status}"
        raise api_error(status, message)
    return msgspec.json.decode(content, type=result_type), answer_headers
