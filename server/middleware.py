"""ASGI middleware: request ids, metrics and the request log, and the request body's
size and time limits."""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import request_log
from .errors import PayloadTooLarge, RequestTimeout
from .metrics import Metrics


class RequestContext:
    """Gives each request an id (`x-request-id`: the caller's own when it is of a
    sane form, so a proxy's trace id follows the request through the logs; else a
    new one), marks every response
    `x-content-type-options: nosniff` (and an HTML page with a strict
    Content-Security-Policy), counts it by route and status, and writes its one
    access line (server/request_log.py) once the response is out.

    The route label is the matched route's path template (`/results/{name}`),
    which Starlette's router leaves in the scope: one label per route, whatever
    ids a path carries, and "other" for paths no route matched, so scanners
    probing random paths cannot explode the metrics' cardinality.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(name == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                # Every body is what its content-type says: no browser may sniff
                # an uploaded image or an error into HTML.
                if not any(name == b"x-content-type-options" for name, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                headers.extend(_page_policy(headers))
                message = {**message, "headers": headers}
            await send(message)

        with request_log.tracing(request_id) as trace:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = _route_label(scope)
                elapsed = time.perf_counter() - started
                self.metrics.requests.labels(route, str(status)).inc()
                self.metrics.request_seconds.labels(route).observe(elapsed)
                client = scope.get("client")
                exchange = request_log.Exchange(
                    method=str(scope.get("method", "")),
                    route=route,
                    dialect=self.metrics.dialect_of(route),
                    status=status,
                    duration_s=elapsed,
                    client=str(client[0]) if client else None,
                )
                request_log.write(trace, exchange)


class BodyLimit:
    """Holds a body to its limits while it streams in, never buffering the rest:
    at most `max_bytes` (413), no pause longer than `idle_timeout_s` between two
    reads, and, after `timeout_s`, an average of at least `min_rate` bytes a
    second (408). A minimum rate rather than a fixed total lets a big upload on a
    slow link finish while a client trickling bytes is cut off.

    The errors are raised from `receive`, inside the endpoint that reads the body,
    so the endpoint's dialect renders them in its own shape. A response that starts
    before the body was all read says `connection: close`: the server closes the
    connection instead of reading (and dropping) the rest.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        idle_timeout_s: float = math.inf,
        timeout_s: float = math.inf,
        min_rate: float = 1.0,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s
        self.timeout_s = timeout_s
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        has_body = bool(declared) or _header(scope, b"transfer-encoding") is not None
        received = 0
        finished = False
        started: float | None = None

        async def limited_receive() -> Message:
            nonlocal received, finished, started
            if declared is not None and declared > self.max_bytes:
                raise PayloadTooLarge(self.max_bytes)
            if finished:
                # Past the body only a disconnect can come, which an app may wait
                # for as long as it likes.
                return await receive()
            now = asyncio.get_running_loop().time()
            started = now if started is None else started
            message = await self._within(receive, self._allowance(received, now - started))
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
                finished = not message.get("more_body", False)
            else:
                finished = True
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and has_body and not finished:
                headers = list(message.get("headers", []))
                if not any(name == b"connection" for name, _ in headers):
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, limited_receive, closing_send)

    def _allowance(self, received: int, elapsed: float) -> tuple[float, bool]:
        """How long the next read may wait, and whether the pause (True) or the
        average rate (False) is what bounds it."""
        by_rate = self.timeout_s + received / self.min_rate - elapsed
        if self.idle_timeout_s <= by_rate:
            return self.idle_timeout_s, True
        return by_rate, False

    async def _within(self, receive: Receive, allowance: tuple[float, bool]) -> Message:
        wait_s, idle = allowance
        try:
            if wait_s <= 0:
                raise TimeoutError
            async with asyncio.timeout(None if math.isinf(wait_s) else wait_s):
                return await receive()
        except TimeoutError:
            if idle:
                message = f"body: nothing arrived for {self.idle_timeout_s:g} seconds"
            else:
                message = (
                    f"body: arrived slower than {self.min_rate:g} bytes a second "
                    f"after the first {self.timeout_s:g} seconds"
                )
            raise RequestTimeout(message) from None


# Matte's own pages (HTML) load only what they serve themselves: no inline script or
# style, no other origin, never framed; cut-outs are shown from blob: and data: URLs.
PAGE_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    b"connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    b"frame-ancestors 'none'"
)


def _page_policy(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The Content-Security-Policy for an HTML response that has none, else nothing.
    (APIs' JSON and images are not documents a browser runs.)"""
    names = {name for name, _ in headers}
    html = any(
        name == b"content-type" and value.lower().startswith(b"text/html")
        for name, value in headers
    )
    if not html or b"content-security-policy" in names:
        return []
    return [(b"content-security-policy", PAGE_POLICY), (b"referrer-policy", b"no-referrer")]


# What an incoming id may be: the characters of UUIDs, hex trace ids and AWS's
# `Root=1-...` (no spaces, quotes, commas or control bytes, so it cannot forge a log
# line or break out of an error body), at most 128 of them.
_SANE_ID = re.compile(rb"[A-Za-z0-9._:=+/-]{1,128}")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("ascii") if _SANE_ID.fullmatch(value) else None
    return None


def _route_label(scope: Scope) -> str:
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "other"


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None
