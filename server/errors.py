"""Errors a request can end in.

Code raises these; one handler in `app.py` asks the request's dialect to render
them, so every API keeps its own error shape while the checks are shared.
"""

from __future__ import annotations

from typing import Literal


class ApiError(Exception):
    """An error with an HTTP status and client-safe messages."""

    status: int = 500
    name: str = "internal_error"

    def __init__(self, *messages: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(*messages)
        self.messages: tuple[str, ...] = messages or (self.default_message(),)
        self.headers: dict[str, str] = headers or {}

    def default_message(self) -> str:
        return "An unexpected server error has occurred, please try again later."


# What was wrong with a client's value, for dialects whose error bodies say so
# (OctoAI's FastAPI-style `type`): no field, a value of the wrong JSON type, a
# value out of range or of the wrong form, or a body that is not JSON at all.
Problem = Literal["missing", "type_error", "value_error", "json_invalid"]


class BadRequest(ApiError):
    """A request the client must change. `field` names the part of the body at fault
    (None: the request as a whole), so a dialect can point at it in its own shape."""

    status = 400
    name = "bad_request"

    def __init__(
        self,
        *messages: str,
        field: str | None = None,
        problem: Problem = "value_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(*messages, headers=headers)
        self.field = field
        self.problem: Problem = problem


class Unprocessable(BadRequest):
    """Fields that are each well-formed JSON but not acceptable values, listed
    together (the IMG Processing API answers 422 with one "field: problem" each)."""

    status = 422
    name = "unprocessable_entity"

    def __init__(self, problems: list[str], field: str | None = None) -> None:
        super().__init__(*problems, field=field)
        self.problems = list(problems)


class Unauthorized(ApiError):
    status = 401
    name = "unauthorized"

    def default_message(self) -> str:
        return "authorization: invalid or missing header value"


class NotFound(ApiError):
    status = 404
    name = "not_found"

    def default_message(self) -> str:
        return "route: not found"


class MethodNotAllowed(ApiError):
    status = 405
    name = "method_not_allowed"

    def default_message(self) -> str:
        return "method: not allowed on this route"


class PayloadTooLarge(ApiError):
    status = 413
    name = "payload_too_large"

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        super().__init__(f"body: payloads cannot be larger than {_size(limit_bytes)} in size")


class RequestTimeout(ApiError):
    """The body stalled or came too slowly (see middleware.BodyLimit)."""

    status = 408
    name = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class RateLimited(ApiError):
    status = 429
    name = "rate_limit_exceeded"

    def __init__(self, limit: int, window_s: float, timeout_s: float, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(
            f"You have exceeded the rate limit of {limit} requests within a "
            f"{_seconds(window_s)} second period, and have been timed out for "
            f"{_seconds(timeout_s)} seconds.",
            headers={"retry-after": str(retry_after_s)},
        )


class ConcurrencyLimited(RateLimited):
    """A key already has its keys-file `concurrency` of requests in progress.
    A RateLimited, so every dialect answers it as its own 429."""

    def __init__(self, limit: int) -> None:
        self.retry_after_s = 1
        ApiError.__init__(
            self,
            f"You have {limit} requests in progress, the most this key may have at once; "
            "retry when one has finished.",
            headers={"retry-after": "1"},
        )


class Unavailable(ApiError):
    """The server is up but cannot take this request now (loading or overloaded)."""

    status = 503
    name = "service_unavailable"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after_s)})


class NotImplementedRoute(ApiError):
    """A route an API has that Matte does not offer (image generation, say)."""

    status = 501
    name = "not_implemented"

    def default_message(self) -> str:
        return "route: this operation is not offered by this server"


class InternalError(ApiError):
    """Stands in for an unexpected exception; its cause is logged, never shown."""


def _size(limit_bytes: int) -> str:
    mib = limit_bytes / (1024 * 1024)
    if mib >= 1 and mib.is_integer():
        return f"{int(mib)}MiB"
    return f"{limit_bytes} bytes"


def _seconds(value: float) -> str:
    # 60.0 -> "60", 0.5 -> "0.5"; the settings' ranges (up to 86,400 s) stay short of
    # the 1e6 where :g would switch to an exponent.
    return f"{value:g}"
