"""Messages the realtime service sends over a run's websocket.

Protocol: connect to `/realtime/v1/runs/{runId}` with `Authorization: Bearer <key>` (or
`?token=<key>`). The server sends a `run` message with the current state at once and one on
every status change; after the run reaches a final status it sends that state and closes
with code 1000. On a bad key, an unknown run or a server fault it sends one `error` message
and closes with 4000 + the HTTP-like status (4401, 4404, 4500).
"""

from __future__ import annotations

from typing import Any

import msgspec

from slipstream_proto.http import Run


class RealtimeRun(msgspec.Struct, kw_only=True, tag_field="type", tag="run", rename="camel"):
    """The run's current state."""

    run: Run[Any]


class RealtimeError(msgspec.Struct, kw_only=True, tag_field="type", tag="error", rename="camel"):
    """Why the subscription ended; the socket closes right after."""

    error: str
    status: int


RealtimeMessage = RealtimeRun | RealtimeError
