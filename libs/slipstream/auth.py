"""Public access tokens for browsers and other frontends, as the seed's `auth`.

A public token reads (or triggers) only what its scopes name, and only until it expires; a page
holds one instead of the secret key:

    token = await auth.create_public_token(scopes={"read": {"runs": [handle.id]}}, expiration_time="1h")
    token = await auth.create_trigger_token("send-email")          # triggers once

Every trigger already returns a read token for its run: `handle.public_access_token`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from slipstream_proto import CreateTokenRequest, PublicToken

from slipstream import _client
from slipstream.errors import TokenScopeError

# {"read": {"runs": ["run_1"] | True, "tags": [...], "batch": [...], "tasks": [...]},
#  "trigger": {"tasks": ["send-email"] | True}}, or the scope strings themselves ("read:runs:run_1").
Scopes = Mapping[str, Mapping[str, bool | str | Iterable[str]]] | Iterable[str]
_KINDS = {"read": ("runs", "tags", "batch", "tasks"), "trigger": ("tasks",)}


def scope_strings(scopes: Scopes) -> list[str]:
    """The wire scopes of the seed's nested form (or of scope strings, checked by the server)."""
    if isinstance(scopes, str):
        return [scopes]
    if not isinstance(scopes, Mapping):
        return list(scopes)
    out: list[str] = []
    for action, kinds in scopes.items():
        if action in ("read", "write") and kinds is True:
            out.append(f"{action}:all")
            continue
        if action not in _KINDS or not isinstance(kinds, Mapping):
            raise TokenScopeError(f"scopes[{action!r}] must be a dict of {', '.join(_KINDS)} kinds, such as"
                                  " {'read': {'runs': ['run_123']}}")
        for kind, values in kinds.items():
            if kind not in _KINDS[action]:
                raise TokenScopeError(f"scopes[{action!r}] has no kind {kind!r}; known: {', '.join(_KINDS[action])}")
            if values is True:
                out.append(f"{action}:{kind}")
            elif isinstance(values, str):
                out.append(f"{action}:{kind}:{values}")
            elif values is False:
                continue
            else:
                out += [f"{action}:{kind}:{v}" for v in values]
    return out


def _expiration(value: str | int | datetime) -> str | int:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def create_public_token(*, scopes: Scopes, expiration_time: str | int | datetime = "15m") -> str:
    """A token that reads what `scopes` name until `expiration_time` (a duration like "1h",
    seconds, or a datetime). TokenScopeError names a bad scope."""
    strings = scope_strings(scopes)
    token = await _client.request("POST", "/api/v1/auth/tokens", PublicToken,
                                  CreateTokenRequest(scopes=strings, expiration_time=_expiration(expiration_time)))
    return token.token


async def create_trigger_token(task_id: str | Iterable[str], *, multiple_use: bool = False,
                               expiration_time: str | int | datetime = "15m") -> str:
    """A token that triggers `task_id` (or any of several) from a browser: once, unless `multiple_use`."""
    ids = [task_id] if isinstance(task_id, str) else list(task_id)
    token = await _client.request("POST", "/api/v1/auth/tokens", PublicToken, CreateTokenRequest(
        scopes=[f"trigger:tasks:{t}" for t in ids], expiration_time=_expiration(expiration_time),
        one_shot=not multiple_use))
    return token.token
