"""The dashboard's client of the public HTTP API: every page reads and acts through it, with the
signed-in user's secret key, as a script would (ADR 0015)."""

from __future__ import annotations

from typing import Any, TypeVar

import aiohttp
import msgspec

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


class ApiError(Exception):
    """The API refused a call: its status and `{"error"}` message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Api:
    """Calls of one request, with one secret key."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, key: str) -> None:
        self.http = http
        self.base_url = base_url
        self.key = key

    async def call(self, method: str, path: str, result: type[T], body: Any = None,
                   params: list[tuple[str, str]] | None = None) -> T:
        headers = {"Authorization": f"Bearer {self.key}"}
        data = None
        if body is not None:
            data = _encoder.encode(body)
            headers["Content-Type"] = "application/json"
        async with self.http.request(method, self.base_url + path, data=data, params=params,
                                     headers=headers) as response:
            raw = await response.read()
            if response.status >= 400:
                try:
                    message = str(msgspec.json.decode(raw).get("error", raw.decode(errors="replace")))
                except (msgspec.DecodeError, AttributeError):
                    message = raw.decode(errors="replace")[:500] or response.reason or "error"
                raise ApiError(response.status, message)
        return msgspec.json.decode(raw, type=result)
