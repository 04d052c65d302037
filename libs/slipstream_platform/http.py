"""HTTP helpers for aiohttp services: JSON bodies, and `{"error": ...}` for every failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from slipstream_platform.db import UNAVAILABLE

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response from a Struct, dict or list."""
    return web.Response(
        body=_encoder.encode(body), status=status, content_type="application/json", headers=headers
    )


class HttpError(Exception):
    """Raised by handlers: becomes `{"error": message}` with the status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
B = TypeVar("B")


def decode_body(body: bytes, decoder: msgspec.json.Decoder[B]) -> B:
    """A request body as the decoder's type; 400 with msgspec's message when it is not."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        if "got `float`" in str(exc):  # 5.0 for an integer: a JSON number whose value is whole is one
            try:
                converted: B = msgspec.convert(_whole_numbers(msgspec.json.decode(body)), type=decoder.type)
                return converted
            except (msgspec.ValidationError, msgspec.DecodeError, TypeError):
                pass
        raise HttpError(400, f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise HttpError(400, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise HttpError(400, "invalid JSON: nested too deep") from None


def _whole_numbers(value: Any) -> Any:
    """The decoded JSON with every float that has no fractional part as an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Slipstream-Request-Id"
# Answer headers a page may read: the read token of a run it triggered, and its key's rate limit.
EXPOSED_HEADERS = "X-Slipstream-Jwt, X-Ratelimit-Limit, X-Ratelimit-Remaining, X-Ratelimit-Reset, Retry-After"


def cors(origins: str) -> Middleware:
    """A middleware that lets browser pages on `origins` (comma-separated, `*` for any; empty
    for none) call the API: it answers preflight requests and marks every answer, errors
    included. Keys travel in the Authorization header, never in cookies, so `*` lends a page
    nothing it does not hold already."""
    allowed = {o.strip() for o in origins.split(",") if o.strip()}

    def allow_origin(request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None or not allowed:
            return None
        return "*" if "*" in allowed else origin if origin in allowed else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = allow_origin(request)
        if request.method == "OPTIONS" and origin is not None and "Access-Control-Request-Method" in request.headers:
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
                "Access-Control-Allow-Headers": CORS_HEADERS, "Access-Control-Max-Age": "600", "Vary": "Origin"})
        response = await handler(request)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response

    return middleware


def body_deadline(seconds: float) -> Middleware:
    """A middleware that reads each request's body before its handler, within `seconds`: a
    client that sends it slower gets a 408 and its connection closed. Handlers read it again
    from memory."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists and seconds > 0:
            try:
                async with asyncio.timeout(seconds):
                    await request.read()
            except TimeoutError:
                response = json_response(
                    {"error": f"the request body did not arrive within {seconds:g} s; send it at once"}, 408)
                response.force_close()
                return response
        return await handler(request)

    return middleware


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error, ours or aiohttp's, into a JSON body with the right status."""
    try:
        return await handler(request)
    except HttpError as exc:
        return json_response({"error": exc.message}, exc.status, exc.headers)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_response({"error": f"request body too large: {exc.text}"}, 413)
    except web.HTTPMethodNotAllowed as exc:
        allow = ", ".join(sorted(exc.allowed_methods))
        return json_response(
            {"error": f"method {request.method} not allowed; use {allow}"}, 405, {"Allow": allow}
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response({"error": exc.reason}, exc.status)
    except UNAVAILABLE as exc:
        log.warning("%s %s: a backing service is unavailable: %r", request.method, request.path, exc)
        return json_response({"error": "service temporarily unavailable, retry shortly"}, 503,
                             {"Retry-After": "1"})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": "internal server error"}, 500)
