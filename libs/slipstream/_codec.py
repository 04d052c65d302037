"""Payloads and outputs as users type them: msgspec Structs, dataclasses and pydantic models are
encoded on the way out, and decoded into a task's declared types on the way in."""

from __future__ import annotations

import typing
from typing import Any

import msgspec


def enc_hook(value: Any) -> Any:
    """What msgspec cannot encode by itself: pydantic models (their JSON form)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"Encoding objects of type {type(value).__name__} is unsupported")


encoder = msgspec.json.Encoder(enc_hook=enc_hook)


def _is_pydantic(tp: Any) -> bool:
    return isinstance(tp, type) and callable(getattr(tp, "model_validate", None))


def convertible(tp: Any) -> bool:
    """Whether values are worth converting into `tp` (not Any, not a bare container)."""
    if tp is Any or tp is None or tp is type(None) or tp is object or tp is typing.NoReturn:
        return False
    if tp in (dict, list, str, int, float, bool, tuple):
        return False
    return True


def convert(value: Any, tp: Any) -> Any:
    """`value` (decoded JSON) as `tp`: pydantic's `model_validate`, else `msgspec.convert`
    (Structs, dataclasses, TypedDicts, unions, containers of them)."""
    if value is None or not convertible(tp):
        return value
    if _is_pydantic(tp):
        return tp.model_validate(value)
    return msgspec.convert(value, tp, strict=False)


def hints_of(fn: Any) -> tuple[Any, Any]:
    """The declared type of a task function's payload (its first parameter) and of its output
    (its return value, without the coroutine); Any where nothing is declared or it cannot be read."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return Any, Any
    import inspect

    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    payload = hints.get(params[0], Any) if params else Any
    output = hints.get("return", Any)
    return payload, output
