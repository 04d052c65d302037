"""`locals`: values shared by middleware, hooks and the run function within one attempt."""

from __future__ import annotations

import contextvars
from typing import Any, Generic, TypeVar

from slipstream.errors import SlipstreamError

T = TypeVar("T")

_store: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "slipstream_locals", default=None
)


class LocalNotSetError(SlipstreamError, LookupError):
    """`locals.get_or_throw` found no value: set it first (usually in a middleware)."""


class LocalKey(Generic[T]):
    """A typed key created with `locals.create("name")`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<LocalKey {self.name!r}>"


def begin_attempt() -> contextvars.Token[dict[str, Any] | None]:
    """Give the attempt that is starting an empty store (the runtime calls this)."""
    return _store.set({})


def end_attempt(token: contextvars.Token[dict[str, Any] | None]) -> None:
    """Drop the attempt's store."""
    _store.reset(token)


def _values() -> dict[str, Any]:
    values = _store.get()
    if values is None:
        raise LocalNotSetError("locals are only available while a task attempt runs")
    return values


class _Locals:
    """The `locals` namespace."""

    def create(self, name: str) -> LocalKey[Any]:
        """A new key; values are per attempt."""
        return LocalKey(name)

    def set(self, key: LocalKey[T], value: T) -> T:
        """Store `value` under `key` for the rest of this attempt and return it."""
        _values()[key.name] = value
        return value

    def get(self, key: LocalKey[T]) -> T | None:
        """The value under `key`, or None."""
        return _values().get(key.name)

    def get_or_throw(self, key: LocalKey[T]) -> T:
        """The value under `key`; LocalNotSetError if it was never set."""
        values = _values()
        if key.name not in values:
            raise LocalNotSetError(f"local {key.name!r} is not set in this attempt")
        return values[key.name]  # type: ignore[no-any-return]


locals = _Locals()
