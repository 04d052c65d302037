"""`slipstream.auth`, not awaited: public access tokens for browsers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from slipstream import auth as _auth
from slipstream._bridge import bridge
from slipstream.auth import Scopes

__all__ = ["create_public_token", "create_trigger_token"]


def create_public_token(*, scopes: Scopes, expiration_time: str | int | datetime = "15m") -> str:
    """A token that reads what `scopes` name until `expiration_time` (see `slipstream.auth`)."""
    return bridge.call(_auth.create_public_token, scopes=scopes, expiration_time=expiration_time)


def create_trigger_token(task_id: str | Iterable[str], *, multiple_use: bool = False,
                         expiration_time: str | int | datetime = "15m") -> str:
    """A token that triggers `task_id` from a browser: once, unless `multiple_use`."""
    return bridge.call(_auth.create_trigger_token, task_id, multiple_use=multiple_use,
                       expiration_time=expiration_time)
