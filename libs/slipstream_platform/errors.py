"""Errors of the server-side libraries.

    PlatformError
     +-- SettingsError          a SLIPSTREAM_* variable is missing or malformed
     +-- IllegalTransition      a status change the run state machine forbids
     +-- EmbeddedServerError    a local NATS or Postgres could not be started
"""

from __future__ import annotations


class PlatformError(Exception):
    """Base of every error raised by slipstream_platform."""


class SettingsError(PlatformError):
    """A setting is missing or has a value that cannot be used."""


class IllegalTransition(PlatformError):
    """A run may not move from its status to the requested one."""

    def __init__(self, run_id: str, current: str, target: str) -> None:
        super().__init__(f"run {run_id} cannot move from {current} to {target}")
        self.run_id = run_id
        self.current = current
        self.target = target


class EmbeddedServerError(PlatformError):
    """A local server for `slipstream dev` or the tests failed to start."""
