"""Retry options and the back-off between attempts (the seed's `retry` option)."""

from __future__ import annotations

import random
from typing import Any, TypedDict

from slipstream_proto.machines import MACHINE_PRESETS

from slipstream.errors import TaskOptionError


class RetryOptions(TypedDict, total=False):
    """`retry=` of a task: the seed's retry options in snake_case."""

    max_attempts: int
    factor: float
    min_timeout_ms: int
    max_timeout_ms: int
    randomize: bool
    # Retry an attempt that ran out of memory on a bigger machine: {"machine": "large-1x"}.
    out_of_memory: dict[str, str]


DEFAULT_RETRY: RetryOptions = {
    "max_attempts": 3,
    "factor": 2.0,
    "min_timeout_ms": 1000,
    "max_timeout_ms": 60_000,
    "randomize": True,
}

_CAMEL = {"maxAttempts": "max_attempts", "minTimeoutInMs": "min_timeout_ms",
          "maxTimeoutInMs": "max_timeout_ms"}


def validate_retry(task_id: str, options: object) -> RetryOptions:
    """Check `retry=` and fill in the defaults; TaskOptionError says what to write."""
    if options is None:
        return dict(DEFAULT_RETRY)  # type: ignore[return-value]
    if not isinstance(options, dict):
        raise TaskOptionError(f"task {task_id!r}: retry must be a dict like {{'max_attempts': 5}}")
    merged: dict[str, Any] = dict(DEFAULT_RETRY)
    for key, value in options.items():
        if key == "out_of_memory":
            if not isinstance(value, dict) or set(value) != {"machine"} or value["machine"] not in MACHINE_PRESETS:
                raise TaskOptionError(
                    f"task {task_id!r}: retry['out_of_memory'] must be {{'machine': PRESET}} with a preset from "
                    + ", ".join(MACHINE_PRESETS)
                )
            merged[key] = dict(value)
            continue
        if key not in DEFAULT_RETRY:
            hint = f" (write {_CAMEL[key]!r})" if key in _CAMEL else ""
            raise TaskOptionError(
                f"task {task_id!r}: unknown retry option {key!r}{hint}; known: "
                + ", ".join(DEFAULT_RETRY)
            )
        if key == "randomize":
            if not isinstance(value, bool):
                raise TaskOptionError(f"task {task_id!r}: retry['randomize'] must be True or False, not {value!r}")
        else:
            expected = (float, int) if key == "factor" else int
            if not isinstance(value, expected) or isinstance(value, bool):
                raise TaskOptionError(f"task {task_id!r}: retry[{key!r}] must be a number, not {value!r}")
        merged[key] = value
    if merged["factor"] <= 0:
        raise TaskOptionError(f"task {task_id!r}: retry['factor'] must be above 0, e.g. 2")
    if merged["max_attempts"] < 1:
        raise TaskOptionError(f"task {task_id!r}: retry['max_attempts'] must be at least 1")
    if merged["min_timeout_ms"] < 0 or merged["max_timeout_ms"] < merged["min_timeout_ms"]:
        raise TaskOptionError(
            f"task {task_id!r}: need 0 <= retry['min_timeout_ms'] <= retry['max_timeout_ms']"
        )
    return merged  # type: ignore[return-value]


def retry_delay_ms(options: RetryOptions, attempt_number: int, rand: float | None = None) -> int:
    """Delay before the attempt after `attempt_number`:
    min(max, (randomize ? 1 + rand : 1) * min * factor ** (n - 1)).
    """
    r = (random.random() if rand is None else rand) if options["randomize"] else 0.0
    try:
        delay = (1 + r) * options["min_timeout_ms"] * options["factor"] ** (attempt_number - 1)
    except OverflowError:
        return int(options["max_timeout_ms"])
    return int(min(options["max_timeout_ms"], delay))
