"""Who may watch what: a secret key in the Authorization header, or a public access token in
the header or in `?token=` (a browser's WebSocket cannot set headers). A secret key in a URL is
refused. Scopes are checked when the socket opens."""

from __future__ import annotations

import msgspec
from aiohttp import web
from slipstream_platform.tokens import Access, Credentials
from slipstream_platform.views import PacketLinks
from slipstream_proto import RealtimeError

_encoder = msgspec.json.Encoder()


class Readers(msgspec.Struct, frozen=True):
    """What both kinds of subscription share in one process: the credentials cache, and how
    runs link to payloads kept outside the row."""

    credentials: Credentials
    links: PacketLinks


async def refuse(ws: web.WebSocketResponse, status: int, message: str) -> web.WebSocketResponse:
    """End a subscription: an `error` message, then a close with code 4000 + status."""
    await ws.send_str(_encoder.encode(RealtimeError(error=message, status=status)).decode())
    await ws.close(code=4000 + status, message=message[:100].encode())
    return ws


async def access_of(credentials: Credentials, request: web.Request) -> Access:
    """What the request's credential may read; Denied (401) when it is not good."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return await credentials.access(credential)
    return await credentials.access(request.query.get("token", ""), in_url=True)
