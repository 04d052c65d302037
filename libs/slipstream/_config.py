"""Where the SDK finds the platform: SLIPSTREAM_API_URL and SLIPSTREAM_SECRET_KEY."""

from __future__ import annotations

import os

import msgspec

from slipstream.errors import ConfigurationError


class ClientConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach the API and realtime, and as which environment."""

    api_url: str
    secret_key: str
    realtime_url: str


_override: ClientConfig | None = None


def configure(
    *, api_url: str | None = None, secret_key: str | None = None, realtime_url: str | None = None,
    access_token: str | None = None,
) -> None:
    """Set the client settings in code instead of the environment. `access_token`, a public
    access token, stands in for the secret key where its scopes reach (reading runs, triggering)."""
    global _override
    base = _from_env(required=False)
    api = (api_url or base.api_url).rstrip("/")
    _override = ClientConfig(
        api_url=api,
        secret_key=secret_key or access_token or base.secret_key,
        realtime_url=(realtime_url or base.realtime_url or api).rstrip("/"),
    )


def _from_env(required: bool) -> ClientConfig:
    api_url = os.environ.get("SLIPSTREAM_API_URL", "").rstrip("/")
    key = os.environ.get("SLIPSTREAM_SECRET_KEY", "")
    if required and not api_url:
        raise ConfigurationError(
            "SLIPSTREAM_API_URL is not set: set it to the trigger-api URL"
            " (`slipstream dev` writes it to .slipstream/dev.env), or call slipstream.configure()"
        )
    if required and not key:
        raise ConfigurationError(
            "SLIPSTREAM_SECRET_KEY is not set: set it to your environment's secret key"
            " (sk_dev_...), or call slipstream.configure()"
        )
    realtime = os.environ.get("SLIPSTREAM_REALTIME_URL", "").rstrip("/") or api_url
    return ClientConfig(api_url=api_url, secret_key=key, realtime_url=realtime)


def current() -> ClientConfig:
    """The settings in force: configure()'s, else the environment's."""
    return _override if _override is not None else _from_env(required=True)
