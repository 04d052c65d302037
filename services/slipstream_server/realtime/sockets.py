"""Websockets with limits: a message from a client over `SLIPSTREAM_WS_MAX_MESSAGE_BYTES` closes
its socket (1009), and a client that stops reading is cut off once a send has waited
`SLIPSTREAM_WS_SEND_TIMEOUT` seconds, so it holds back no one else's updates."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from slipstream_platform.settings import RealtimeSettings

log = logging.getLogger(__name__)


class Socket(web.WebSocketResponse):
    """A websocket that can be dropped without a closing handshake, which a client that does
    not read would never complete."""

    # uvloop's transports are not asyncio.Transport subclasses, but have abort() too.
    _abort: Callable[[], None] | None = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter:
        self._abort = getattr(request.transport, "abort", None)
        return await super().prepare(request)

    def abort(self) -> None:
        if self._abort is not None:
            self._abort()


def open_socket(settings: RealtimeSettings) -> Socket:
    """A subscriber's socket, before `prepare`."""
    return Socket(heartbeat=30, max_msg_size=settings.ws_max_message_bytes)


async def send(ws: web.WebSocketResponse, data: str, timeout: float) -> bool:
    """Send one message; False if the socket is gone or its client stopped reading (then it is dropped)."""
    try:
        async with asyncio.timeout(timeout):
            await ws.send_str(data)
    except TimeoutError:
        log.warning("dropped a websocket whose client read nothing for %.1f s", timeout)
        if isinstance(ws, Socket):
            ws.abort()
        return False
    except Exception:  # closing or closed
        return False
    return True
