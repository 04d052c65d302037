"""`retry=` options: validation when a task is defined, and the back-off between attempts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slipstream._retry import RetryOptions, retry_delay_ms, validate_retry
from slipstream.errors import TaskOptionError

DEFAULTS = {
    "max_attempts": 3,
    "factor": 2.0,
    "min_timeout_ms": 1000,
    "max_timeout_ms": 60_000,
    "randomize": True,
}


def test_no_retry_option_gives_the_defaults() -> None:
    assert validate_retry("t", None) == DEFAULTS


def test_given_options_are_merged_over_the_defaults() -> None:
    assert validate_retry("t", {"max_attempts": 5, "randomize": False}) == {
        **DEFAULTS,
        "max_attempts": 5,
        "randomize": False,
    }


def test_validate_retry_returns_a_copy_each_time() -> None:
    first = validate_retry("t", None)
    first["max_attempts"] = 99
    assert validate_retry("t", None)["max_attempts"] == 3


def test_factor_accepts_an_int() -> None:
    assert validate_retry("t", {"factor": 3})["factor"] == 3


@pytest.mark.parametrize(
    ("camel", "snake"),
    [("maxAttempts", "max_attempts"), ("minTimeoutInMs", "min_timeout_ms"), ("maxTimeoutInMs", "max_timeout_ms")],
)
def test_a_camel_case_key_is_rejected_with_the_snake_case_spelling(camel: str, snake: str) -> None:
    with pytest.raises(TaskOptionError) as caught:
        validate_retry("send-email", {camel: 5})
    message = str(caught.value)
    assert "'send-email'" in message
    assert repr(camel) in message
    assert f"write {snake!r}" in message


def test_an_unknown_key_is_rejected_with_the_known_keys() -> None:
    with pytest.raises(TaskOptionError, match="unknown retry option 'attempts'") as caught:
        validate_retry("t", {"attempts": 5})
    assert "max_attempts, factor, min_timeout_ms, max_timeout_ms, randomize" in str(caught.value)
    assert "write" not in str(caught.value)


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": "3"},
        {"max_attempts": 2.5},
        {"max_attempts": True},
        {"factor": "2"},
        {"factor": True},
        {"min_timeout_ms": 1.5},
        {"max_timeout_ms": None},
        {"randomize": 1},
        {"randomize": "yes"},
    ],
    ids=repr,
)
def test_a_value_of_the_wrong_type_is_rejected(options: dict[str, Any]) -> None:
    (key,) = options
    with pytest.raises(TaskOptionError) as caught:
        validate_retry("t", options)
    assert f"retry[{key!r}]" in str(caught.value)


@pytest.mark.parametrize("options", [[("max_attempts", 3)], "max_attempts=3", 3], ids=repr)
def test_retry_must_be_a_dict(options: object) -> None:
    with pytest.raises(TaskOptionError, match=r"retry must be a dict like \{'max_attempts': 5\}"):
        validate_retry("t", options)


@pytest.mark.parametrize("max_attempts", [0, -1])
def test_max_attempts_must_be_at_least_one(max_attempts: int) -> None:
    with pytest.raises(TaskOptionError, match="at least 1"):
        validate_retry("t", {"max_attempts": max_attempts})


@pytest.mark.parametrize(
    "options", [{"min_timeout_ms": -1}, {"min_timeout_ms": 5000, "max_timeout_ms": 4000}], ids=repr
)
def test_timeouts_must_be_ordered_and_not_negative(options: dict[str, int]) -> None:
    with pytest.raises(TaskOptionError, match="min_timeout_ms"):
        validate_retry("t", options)


def test_task_option_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_retry("t", {"max_attempts": 0})


@pytest.mark.parametrize("factor", [0, -2])
def test_factor_must_be_positive(factor: float) -> None:
    with pytest.raises(TaskOptionError):
        validate_retry("t", {"factor": factor})


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [(1, 0.0, 1000), (1, 0.5, 1500), (2, 0.5, 3000), (3, 0.25, 5000), (6, 0.0, 32_000), (6, 0.9, 60_000)],
)
def test_delay_with_randomize(attempt: int, rand: float, expected: int) -> None:
    assert retry_delay_ms(validate_retry("t", None), attempt, rand) == expected


@pytest.mark.parametrize(("attempt", "expected"), [(1, 1000), (2, 2000), (3, 4000), (6, 32_000)])
def test_delay_without_randomize_ignores_rand(attempt: int, expected: int) -> None:
    options = validate_retry("t", {"randomize": False})
    assert retry_delay_ms(options, attempt, 0.99) == expected
    assert retry_delay_ms(options, attempt) == expected


def test_delay_is_capped_at_max_timeout() -> None:
    options = validate_retry("t", {"max_timeout_ms": 5000, "randomize": False})
    assert [retry_delay_ms(options, n) for n in range(1, 6)] == [1000, 2000, 4000, 5000, 5000]


def test_delay_uses_a_random_factor_between_one_and_two_when_none_is_given() -> None:
    options = validate_retry("t", None)
    assert all(1000 <= retry_delay_ms(options, 1) < 2000 for _ in range(100))


def test_delay_for_a_very_late_attempt_is_the_cap() -> None:
    options = validate_retry("t", {"max_attempts": 5000})
    assert retry_delay_ms(options, 2000, 0.0) == 60_000


@st.composite
def retry_options(draw: st.DrawFn) -> RetryOptions:
    min_ms = draw(st.integers(min_value=0, max_value=1_000_000))
    return validate_retry(
        "t",
        {
            "max_attempts": draw(st.integers(min_value=1, max_value=100)),
            "factor": draw(st.floats(min_value=0.1, max_value=10, allow_nan=False, allow_infinity=False)),
            "min_timeout_ms": min_ms,
            "max_timeout_ms": draw(st.integers(min_value=min_ms, max_value=10_000_000)),
            "randomize": draw(st.booleans()),
        },
    )


@given(
    options=retry_options(),
    attempt=st.integers(min_value=1, max_value=100),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_delay_is_between_the_unrandomized_backoff_and_the_cap(
    options: RetryOptions, attempt: int, rand: float
) -> None:
    floor = int(min(options["max_timeout_ms"], options["min_timeout_ms"] * options["factor"] ** (attempt - 1)))
    delay = retry_delay_ms(options, attempt, rand)
    assert floor <= delay <= options["max_timeout_ms"]
    if not options["randomize"]:
        assert delay == floor
