"""The error classes: status, name and client-safe messages, before any dialect renders them."""

from __future__ import annotations

import pytest

from server.errors import (
    ApiError,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)

GENERIC = "An unexpected server error has occurred, please try again later."


@pytest.mark.parametrize(
    ("cls", "status", "name", "message"),
    [
        (ApiError, 500, "internal_error", GENERIC),
        (InternalError, 500, "internal_error", GENERIC),
        (BadRequest, 400, "bad_request", GENERIC),
        (Unauthorized, 401, "unauthorized", "authorization: invalid or missing header value"),
        (NotFound, 404, "not_found", "route: not found"),
        (MethodNotAllowed, 405, "method_not_allowed", "method: not allowed on this route"),
    ],
)
def test_status_name_and_default_message(
    cls: type[ApiError], status: int, name: str, message: str
) -> None:
    error = cls()
    assert (error.status, error.name) == (status, name)
    assert error.messages == (message,)
    assert error.headers == {}
    assert isinstance(error, ApiError)


def test_given_messages_replace_the_default_and_keep_their_order() -> None:
    error = BadRequest("image: is required", "accept: must be one of image/*, application/json")
    assert error.messages == (
        "image: is required",
        "accept: must be one of image/*, application/json",
    )
    # The messages are also the exception's own args, so logs and tracebacks show them.
    assert error.args == error.messages
    assert str(BadRequest("image: is required")) == "image: is required"


def test_headers_default_to_an_empty_dict_of_their_own() -> None:
    first, second = ApiError(), ApiError()
    assert first.headers == {} and second.headers == {}
    first.headers["x"] = "1"
    assert second.headers == {}  # no dict shared between instances
    assert ApiError(headers={"allow": "POST"}).headers == {"allow": "POST"}


@pytest.mark.parametrize(
    ("limit_bytes", "size"),
    [
        (10 * 1024 * 1024, "10MiB"),
        (1024 * 1024, "1MiB"),  # exactly 1 MiB is still written in MiB
        (3 * 1024 * 1024, "3MiB"),
        (1000, "1000 bytes"),
        (1024 * 1024 - 1, "1048575 bytes"),
        (512 * 1024, "524288 bytes"),  # a whole half MiB is under 1 MiB
        (3 * 1024 * 1024 // 2, "1572864 bytes"),  # 1.5 MiB is no whole number of MiB
        (10 * 1024 * 1024 + 1, "10485761 bytes"),
    ],
)
def test_payload_too_large_names_the_limit(limit_bytes: int, size: str) -> None:
    error = PayloadTooLarge(limit_bytes)
    assert (error.status, error.name) == (413, "payload_too_large")
    assert error.messages == (f"body: payloads cannot be larger than {size} in size",)
    assert error.limit_bytes == limit_bytes
    assert error.headers == {}


def test_rate_limited_message_and_retry_after() -> None:
    error = RateLimited(limit=150, window_s=10.0, timeout_s=60.0, retry_after_s=42)
    assert (error.status, error.name) == (429, "rate_limit_exceeded")
    assert error.messages == (
        "You have exceeded the rate limit of 150 requests within a 10 second period,"
        " and have been timed out for 60 seconds.",
    )
    assert error.headers == {"retry-after": "42"}
    assert error.retry_after_s == 42


def test_rate_limited_writes_fractional_seconds_without_trailing_zeros() -> None:
    error = RateLimited(limit=5, window_s=2.5, timeout_s=0.25, retry_after_s=1)
    assert error.messages == (
        "You have exceeded the rate limit of 5 requests within a 2.5 second period,"
        " and have been timed out for 0.25 seconds.",
    )
    # Whole seconds given as int or float read the same.
    assert RateLimited(1, 3, 7.0, 1).messages == (
        "You have exceeded the rate limit of 1 requests within a 3 second period,"
        " and have been timed out for 7 seconds.",
    )


@pytest.mark.parametrize(("given", "header"), [((), "1"), ((5,), "5"), ((0,), "0")])
def test_unavailable_always_says_when_to_retry(given: tuple[int, ...], header: str) -> None:
    error = Unavailable("server: busy", *given)
    assert (error.status, error.name) == (503, "service_unavailable")
    assert error.messages == ("server: busy",)
    assert error.headers == {"retry-after": header}


def test_bad_request_names_its_field_and_problem() -> None:
    plain = BadRequest("image: is required")
    assert plain.field is None and plain.problem == "value_error"
    assert plain.headers == {} and plain.messages == ("image: is required",)
    named = BadRequest("a: x", "a: y", field="a", problem="missing", headers={"h": "1"})
    assert (named.field, named.problem) == ("a", "missing")
    assert named.messages == ("a: x", "a: y") and named.headers == {"h": "1"}
    assert BadRequest().messages == (GENERIC,)
