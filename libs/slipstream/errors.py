"""Errors the SDK raises.

    SlipstreamError
     +-- TaskOptionError        a @task option is wrong (raised when the module is imported)
     +-- BatchItemError         a batch or one of its items (named by index) is wrong; nothing sent
     +-- TokenScopeError        `auth.create_public_token` scopes are not of the seed's shape
     +-- OutputTypeError        a run's output is not of its task's declared return type
     +-- ConfigurationError     SLIPSTREAM_API_URL / SLIPSTREAM_SECRET_KEY missing or bad
     +-- ApiConnectionError     the API could not be reached
     +-- ApiError               the API answered with an error status
          +-- BadRequestError           400: the request's JSON or fields are wrong
          +-- AuthenticationError       401: missing or wrong secret key, expired or spent token
          +-- PermissionDeniedError     403: a public token's scopes do not reach this
          +-- NotFoundError             404: no such run (in this environment)
          +-- PayloadTooLargeError      413
          +-- UnprocessableEntityError  422: valid JSON that breaks a rule
          +-- RateLimitError            429: the key's rate limit, still after waiting out the reset 3 times
     +-- TaskRunError           raised inside a worker; ends the attempt with its message
          +-- AbortTaskRunError         raise it in a task to fail the run without retrying
          +-- TaskPayloadParsedError    a schema task's payload did not parse (not retried)
          +-- OutputNotSerializableError  the task returned something that is not JSON
          +-- OutputTooLargeError       the task returned more than 100 MB of JSON (not retried)
          +-- MaxDurationExceededError  the run executed longer than its max_duration
          +-- SubtaskUnwrapError        `result.unwrap()` of a child run that did not complete
"""

from __future__ import annotations

from typing import Any


class SlipstreamError(Exception):
    """Base of every error the SDK raises."""


class TaskOptionError(SlipstreamError, ValueError):
    """A task definition has an option that is missing, unknown or of the wrong type."""


class BatchItemError(SlipstreamError, ValueError):
    """A batch, or one of its items (named by its index), is not valid; nothing was sent."""


class TokenScopeError(SlipstreamError, ValueError):
    """The scopes of a public access token are not of the seed's shape; nothing was sent."""


class OutputTypeError(SlipstreamError, TypeError):
    """A run's output does not decode into its task's declared return type (named in the message)."""


class ConfigurationError(SlipstreamError):
    """The SDK is not configured: set SLIPSTREAM_API_URL and SLIPSTREAM_SECRET_KEY."""


class ApiConnectionError(SlipstreamError):
    """The API could not be reached."""


class ApiError(SlipstreamError):
    """The API answered with an error status; `status` and `message` say which."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class BadRequestError(ApiError):
    """400: the request's JSON or fields are wrong."""


class AuthenticationError(ApiError):
    """401: the secret key is missing or wrong."""


class PermissionDeniedError(ApiError):
    """403: a public access token's scopes do not include what was asked (the message names it)."""


class NotFoundError(ApiError):
    """404: the run (or task) does not exist in this environment."""


class PayloadTooLargeError(ApiError):
    """413: the payload is over the limit."""


class UnprocessableEntityError(ApiError):
    """422: the request is well-formed but breaks a rule."""


class RateLimitError(ApiError):
    """429: the key made more requests than the API's rate limit allows; the SDK waited for the
    reset and tried again 3 times before raising it."""


class TaskRunError(SlipstreamError):
    """Base of errors the runtime raises for a run."""


class AbortTaskRunError(TaskRunError):
    """Raise inside a task to fail the run at once: no retry, whatever the retry options."""


class TaskPayloadParsedError(TaskRunError):
    """The payload of a run did not match its task's schema; the run fails without retrying."""


class SubtaskUnwrapError(TaskRunError):
    """`unwrap()` of a `trigger_and_wait` result whose child run failed or was canceled:
    `run_id` and `task_id` name the child, `cause` is its error (a dict with `message`,
    `name`, `stackTrace`), or None if it ended without one (canceled, expired)."""

    def __init__(self, message: str, *, run_id: str = "", task_id: str | None = None,
                 cause: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.task_id = task_id
        self.cause = cause


class MaxDurationExceededError(TaskRunError):
    """The run executed for longer than its max_duration (it ends TIMED_OUT)."""


class MetadataTooLargeError(TaskRunError):
    """A metadata change would take the run's metadata past 256 KB (serialized); nothing changed."""


class OutputNotSerializableError(TaskRunError):
    """A task returned a value that cannot be encoded as JSON."""


class OutputTooLargeError(TaskRunError):
    """A task returned more than 100 MB of JSON; the run fails without retrying."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def api_error(status: int, message: str) -> ApiError:
    """The typed error for an HTTP status."""
    return _BY_STATUS.get(status, ApiError)(status, message)
