"""Who may watch what: a secret key in the Authorization header, or a public access token in
the header or in `?token=` (a browser's WebSocket cannot set headers). A secret key in a URL is
refused. Scopes are checked when the socket opens."""

from __future__ import annotations

from aiohttp import web
from slipstream_platform.tokens import Access, Credentials


async def access_of(credentials: Credentials, request: web.Request) -> Access:
    """What the request's credential may read; Denied (401) when it is not good."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return await credentials.access(credential)
    return await credentials.access(request.query.get("token", ""), in_url=True)
