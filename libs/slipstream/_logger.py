"""`logger`: structured log lines stored with the run (readable over the API).

Inside an attempt, each call is recorded with the run and the attempt number; outside one
(at import time, in a script) it goes to the standard `logging` module.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

_std = logging.getLogger("slipstream.task")
_encoder = msgspec.json.Encoder()

# The sink of the attempt being executed in this context (set by the worker runtime).
current_sink: contextvars.ContextVar[Callable[[dict[str, Any]], None] | None] = contextvars.ContextVar(
    "slipstream_log_sink", default=None
)

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "log": logging.INFO,
           "warn": logging.WARNING, "error": logging.ERROR}


def _jsonable(attributes: dict[str, Any]) -> dict[str, Any]:
    try:
        _encoder.encode(attributes)
        return attributes
    except (TypeError, msgspec.EncodeError):
        return {key: repr(value) for key, value in attributes.items()}


class TaskLogger:
    """`logger.info("message", key=value)`: a line with attributes, kept with the run."""

    def _emit(self, level: str, message: str, attributes: dict[str, Any]) -> None:
        from slipstream._waits import is_replaying

        if is_replaying():
            return  # stored when this code first ran, before the run waited
        sink = current_sink.get()
        _std.log(_LEVELS[level], "%s %s", message, attributes if attributes else "")
        if sink is not None:
            sink({"level": {"log": "INFO", "warn": "WARN"}.get(level, level.upper()), "message": str(message),
                  "attributes": _jsonable(attributes), "timestamp": time.time()})

    def debug(self, message: str, **attributes: Any) -> None:
        """A DEBUG line."""
        self._emit("debug", message, attributes)

    def log(self, message: str, **attributes: Any) -> None:
        """An INFO line (the seed's `logger.log`)."""
        self._emit("log", message, attributes)

    def info(self, message: str, **attributes: Any) -> None:
        """An INFO line."""
        self._emit("info", message, attributes)

    def warn(self, message: str, **attributes: Any) -> None:
        """A WARN line."""
        self._emit("warn", message, attributes)

    warning = warn

    def error(self, message: str, **attributes: Any) -> None:
        """An ERROR line."""
        self._emit("error", message, attributes)


logger = TaskLogger()
