"""Reading runs: `await runs.retrieve(id)` and `async for run in runs.subscribe_to_run(id)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import quote

import aiohttp
import msgspec
from slipstream_proto import RealtimeError, RealtimeMessage, RealtimeRun, Run, RunLogLine, RunLogs, RunReference

from slipstream import _client, _config
from slipstream.errors import ApiConnectionError, api_error

__all__ = ["cancel", "logs", "reschedule", "retrieve", "subscribe_to_run"]

_message_decoder = msgspec.json.Decoder(RealtimeMessage)


async def retrieve(run_id: str) -> Run:
    """The run with its status, payload, output, error and attempts."""
    return await _client.request("GET", f"/api/v3/runs/{quote(run_id, safe='')}", Run)


async def cancel(run_id: str) -> RunReference:
    """Cancel a run and its unfinished child runs (idempotent: a finished run is left as is).

    A queued or delayed run ends CANCELED at once; an executing one has `ctx.signal` set and
    its `on_cancel` hooks called, then is stopped.
    """
    return await _client.request("POST", f"/api/v2/runs/{quote(run_id, safe='')}/cancel", RunReference)


async def reschedule(run_id: str, *, delay: str | datetime) -> Run:
    """Move a DELAYED run to another time (a duration from now, an ISO string or a datetime)."""
    text = delay.isoformat() if isinstance(delay, datetime) else delay
    return await _client.request(
        "POST", f"/api/v1/runs/{quote(run_id, safe='')}/reschedule", Run, {"delay": text}
    )


async def logs(run_id: str) -> list[RunLogLine]:
    """The lines `logger` wrote in the run's attempts, oldest first."""
    answer = await _client.request("GET", f"/api/v1/runs/{quote(run_id, safe='')}/logs", RunLogs)
    return answer.data


async def subscribe_to_run(run_id: str) -> AsyncIterator[Run]:
    """Yield the run now and after every status change; stop once it has finished."""
    config = _config.current()
    http = await _client.session()
    url = f"{config.realtime_url}/realtime/v1/runs/{quote(run_id, safe='')}"
    try:
        ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {config.secret_key}"},
                                   heartbeat=30)
    except aiohttp.ClientError as exc:
        raise ApiConnectionError(f"could not reach realtime at {config.realtime_url}: {exc}") from exc
    async with ws:
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = _message_decoder.decode(frame.data)
            if isinstance(message, RealtimeError):
                raise api_error(message.status, message.error)
            assert isinstance(message, RealtimeRun)
            yield message.run
            if message.run.is_completed:
                return
    if ws.close_code not in (1000, None):
        raise ApiConnectionError(f"realtime closed the subscription with code {ws.close_code}")
