"""HTTP helpers for aiohttp services: JSON bodies, and `{"error": ...}` for every failure."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

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
        raise HttpError(400, f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise HttpError(400, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise HttpError(400, "invalid JSON: nested too deep") from None


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
