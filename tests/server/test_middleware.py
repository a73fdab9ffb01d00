"""middleware.py at the ASGI level: request ids and metrics, and the streaming body limit."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import middleware
from server.errors import PayloadTooLarge, RequestTimeout
from server.metrics import Metrics
from server.middleware import BodyLimit, RequestContext, _content_length

HEX_ID = re.compile(r"[0-9a-f]{32}")
ROUTES = ("/healthz", "/results/{name}", "/api/v6/fetch/{id}")


def http_scope(path: str = "/healthz", headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": headers if headers is not None else [],
    }


class FakeReceive:
    """Hands out `messages` in order and counts the calls."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = list(messages)
        self.calls = 0

    async def __call__(self) -> Message:
        self.calls += 1
        return self.messages.pop(0)


class FakeSend:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)


def chunks(*sizes: int) -> list[Message]:
    """`http.request` messages of these sizes, the last without `more_body`."""
    return [
        {"type": "http.request", "body": b"x" * size, "more_body": i < len(sizes) - 1}
        for i, size in enumerate(sizes)
    ]


def call(app: ASGIApp, scope: Scope, receive: Receive, send: Send | None = None) -> None:
    asyncio.run(app(scope, receive, send or FakeSend()))  # type: ignore[arg-type]


# --- BodyLimit -------------------------------------------------------------------------------


class Reader:
    """An endpoint that reads the whole body, noting every message and the error (if any)
    that `receive` raised, as an endpoint inside the dialect would see it."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.error: PayloadTooLarge | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            for _ in range(100):  # bounded: the fakes never send more
                message = await receive()
                self.received.append(message)
                if not message.get("more_body", False):
                    return
        except PayloadTooLarge as exc:
            self.error = exc


def limited(
    max_bytes: int, messages: list[Message], headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[Reader, FakeReceive]:
    reader = Reader()
    receive = FakeReceive(messages)
    call(BodyLimit(reader, max_bytes=max_bytes), http_scope(headers=headers), receive)
    return reader, receive


def assert_refused(reader: Reader, max_bytes: int) -> None:
    assert reader.error is not None, "the body was not refused"
    assert reader.error.status == 413
    assert reader.error.limit_bytes == max_bytes
    assert reader.error.messages == (
        f"body: payloads cannot be larger than {max_bytes} bytes in size",
    )


def test_a_declared_length_over_the_limit_is_refused_before_receive_is_called() -> None:
    # Nothing is pulled from the client: the refusal comes from the header alone.
    reader, receive = limited(10, chunks(11), [(b"content-length", b"11")])
    assert_refused(reader, 10)
    assert receive.calls == 0
    assert reader.received == []


def test_a_body_of_exactly_the_limit_passes() -> None:
    messages = chunks(4, 6)
    reader, receive = limited(10, messages, [(b"content-length", b"10")])
    assert reader.error is None
    assert reader.received == messages
    assert receive.calls == 2


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"content-length", b"5")],  # a lying client
        [(b"content-length", b"ten")],  # unreadable: no pre-check, the stream still counts
        [(b"content-type", b"multipart/form-data"), (b"content-length", b"10")],
    ],
    ids=["no-length", "lying-length", "unreadable-length", "after-other-headers"],
)
def test_a_body_that_streams_one_byte_past_the_limit_is_refused_as_it_arrives(
    headers: list[tuple[bytes, bytes]],
) -> None:
    # 4 + 4 + 3 = 11 bytes against 10: the third message is the one refused, and
    # nothing after it is asked for.
    reader, receive = limited(10, chunks(4, 4, 3, 5), headers)
    assert_refused(reader, 10)
    assert len(reader.received) == 2
    assert receive.calls == 3


@pytest.mark.parametrize(
    "headers", [[], [(b"content-length", b"ten")]], ids=["no-length", "unreadable-length"]
)
def test_a_streamed_body_of_exactly_the_limit_passes(headers: list[tuple[bytes, bytes]]) -> None:
    reader, _ = limited(10, chunks(4, 4, 2), headers)
    assert reader.error is None
    assert [len(m["body"]) for m in reader.received] == [4, 4, 2]


def test_messages_without_a_body_count_as_empty() -> None:
    messages: list[Message] = [
        {"type": "http.request", "more_body": True},
        {"type": "http.request", "body": b"x", "more_body": False},
    ]
    reader, _ = limited(1, messages)
    assert reader.error is None
    assert reader.received == messages


def test_only_request_bodies_count_toward_the_limit() -> None:
    # A disconnect carrying a `body` key (no server sends one) shows what is counted.
    messages: list[Message] = [
        {"type": "http.request", "body": b"x", "more_body": True},
        {"type": "http.disconnect", "body": b"yyyy"},
    ]
    reader, _ = limited(1, messages)
    assert reader.error is None
    assert reader.received == messages


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        ([(b"content-length", b"123")], 123),
        ([(b"content-type", b"text/plain"), (b"content-length", b"0")], 0),
        ([(b"content-length", b"12a")], None),
        ([(b"content-length", b"")], None),
        ([(b"x-content-length", b"5")], None),
    ],
    ids=["absent", "number", "zero-after-other", "not-a-number", "empty", "other-header"],
)
def test_the_declared_length_is_read_from_the_content_length_header(
    headers: list[tuple[bytes, bytes]], expected: int | None
) -> None:
    assert _content_length(http_scope(headers=headers)) == expected


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_body_limit_passes_other_scopes_through_untouched(kind: str) -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    scope: Scope = {"type": kind}
    receive, send = FakeReceive([]), FakeSend()
    call(BodyLimit(app, max_bytes=0), scope, receive, send)
    assert seen == [(scope, receive, send)]
    assert seen[0][1] is receive and seen[0][2] is send


# --- RequestContext --------------------------------------------------------------------------


def route_like_the_router(scope: Scope) -> None:
    """What Starlette's router does on a match: leave the matched route in the scope."""
    for template in ROUTES:
        if Route(template, endpoint=lambda request: None).matches(scope)[0] != Match.NONE:
            scope["route"] = Route(template, endpoint=lambda request: None)


def responder(
    status: int = 200, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[ASGIApp, list[Scope]]:
    """An app that routes as Starlette does, answers `status` and notes the scope it was given."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        route_like_the_router(scope)
        scopes.append(scope)
        start: Message = {"type": "http.response.start", "status": status}
        if headers is not None:
            start["headers"] = headers
        await send(start)
        await send({"type": "http.response.body", "body": b"done"})

    return app, scopes


def requests(metrics: Metrics, route: str, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "matte_requests_total", {"route": route, "status": status}
    )
    return value or 0.0


def observed(metrics: Metrics, route: str) -> tuple[float, float]:
    """The latency histogram's (count, sum) for `route`."""
    labels = {"route": route}
    count = metrics.registry.get_sample_value("matte_request_seconds_count", labels)
    total = metrics.registry.get_sample_value("matte_request_seconds_sum", labels)
    return count or 0.0, total or 0.0


def context(
    app: ASGIApp, path: str = "/healthz", metrics: Metrics | None = None
) -> tuple[FakeSend, Metrics]:
    metrics = metrics or Metrics()
    send = FakeSend()
    call(RequestContext(app, metrics=metrics), http_scope(path), FakeReceive([]), send)
    return send, metrics


def test_each_response_gets_a_32_hex_request_id_that_the_app_also_sees() -> None:
    app, scopes = responder(200, [(b"content-type", b"text/plain")])
    send, _ = context(app)
    start, body = send.messages
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert start["headers"][0] == (b"content-type", b"text/plain")
    assert len(start["headers"]) == 3
    name, value = start["headers"][1]
    assert name == b"x-request-id" and HEX_ID.fullmatch(value.decode())
    # The error handlers read the id from the scope, so the body and header agree.
    assert scopes[0]["state"]["request_id"] == value.decode()
    assert body == {"type": "http.response.body", "body": b"done"}


def test_a_response_start_without_headers_still_gets_the_id() -> None:
    app, _ = responder(204, headers=None)
    send, _ = context(app)
    [(name, value), nosniff] = send.messages[0]["headers"]
    assert name == b"x-request-id" and HEX_ID.fullmatch(value.decode())
    assert nosniff == (b"x-content-type-options", b"nosniff")


def test_every_request_gets_its_own_id() -> None:
    app, scopes = responder()
    metrics = Metrics()
    for _ in range(3):
        context(app, metrics=metrics)
    assert len({scope["state"]["request_id"] for scope in scopes}) == 3


@pytest.mark.parametrize(
    "incoming",
    [
        b"4bf92f3577b34da6a3ce929d0e0e4736",
        b"0f8fad5b-d9cb-469f-a165-70867728950e",
        b"Root=1-67891233-abcdef012345678912345678",
        b"a" * 128,
    ],
)
def test_a_sane_incoming_id_is_kept_for_tracing(incoming: bytes) -> None:
    app, scopes = responder()
    send = FakeSend()
    scope = http_scope(headers=[(b"x-request-id", incoming)])
    call(RequestContext(app, metrics=Metrics()), scope, FakeReceive([]), send)
    assert (b"x-request-id", incoming) in send.messages[0]["headers"]
    assert scopes[0]["state"]["request_id"] == incoming.decode()


@pytest.mark.parametrize(
    "incoming",
    [
        b"",
        b"a" * 129,
        b"two words",
        b'quote"d',
        b"line\r\nbreak",
        b"<script>",
        b"caf\xc3\xa9",
        b"comma,separated",
    ],
)
def test_any_other_incoming_id_is_replaced(incoming: bytes) -> None:
    app, scopes = responder()
    send = FakeSend()
    scope = http_scope(headers=[(b"x-request-id", incoming)])
    call(RequestContext(app, metrics=Metrics()), scope, FakeReceive([]), send)
    ids = [value for name, value in send.messages[0]["headers"] if name == b"x-request-id"]
    assert len(ids) == 1 and HEX_ID.fullmatch(ids[0].decode())
    assert scopes[0]["state"]["request_id"] == ids[0].decode()


def test_an_id_the_app_already_set_is_kept_and_not_duplicated() -> None:
    app, _ = responder(200, [(b"x-request-id", b"from-the-app")])
    send, _ = context(app)
    assert send.messages[0]["headers"] == [
        (b"x-request-id", b"from-the-app"),
        (b"x-content-type-options", b"nosniff"),
    ]


def test_an_html_page_gets_a_strict_content_security_policy() -> None:
    app, _ = responder(200, [(b"content-type", b"text/html; charset=utf-8")])
    send, _ = context(app, "/")
    headers = dict(send.messages[0]["headers"])
    policy = headers[b"content-security-policy"].decode()
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no inline script, no other origin
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert headers[b"referrer-policy"] == b"no-referrer"


def test_a_page_policy_the_app_set_is_kept_and_api_replies_get_none() -> None:
    own = (b"content-security-policy", b"default-src 'self'")
    app, _ = responder(200, [(b"content-type", b"text/html"), own])
    send, _ = context(app, "/")
    policies = [h for h in send.messages[0]["headers"] if h[0] == b"content-security-policy"]
    assert policies == [own]
    for content_type in (b"application/json", b"image/png"):
        app, _ = responder(200, [(b"content-type", content_type)])
        send, _ = context(app)
        names = [name for name, _ in send.messages[0]["headers"]]
        assert b"content-security-policy" not in names


def test_every_response_says_nosniff_once() -> None:
    # Security headers on every response (issue 13); one the app set is kept, not doubled.
    app, _ = responder(200, [(b"x-content-type-options", b"nosniff")])
    send, _ = context(app)
    values = [v for n, v in send.messages[0]["headers"] if n == b"x-content-type-options"]
    assert values == [b"nosniff"]


def test_known_routes_are_counted_by_path_and_status() -> None:
    app, _ = responder(418)
    _, metrics = context(app, "/healthz")
    assert requests(metrics, "/healthz", "418") == 1
    assert requests(metrics, "other", "418") == 0
    assert observed(metrics, "/healthz")[0] == 1


def test_unknown_paths_are_counted_as_other() -> None:
    # Scanners probing random paths must not add a label each.
    app, _ = responder(404)
    metrics = Metrics()
    context(app, "/wp-admin", metrics)
    context(app, "/.env", metrics)
    assert requests(metrics, "other", "404") == 2
    assert requests(metrics, "/wp-admin", "404") == 0
    assert observed(metrics, "other")[0] == 2


def test_a_route_with_ids_in_its_path_is_counted_under_its_template() -> None:
    # Result URLs and fetch paths carry ids: one label for the route, not one per id.
    app, _ = responder(200)
    metrics = Metrics()
    context(app, "/results/abc.png", metrics)
    context(app, "/results/def.png", metrics)
    context(app, "/api/v6/fetch/12", metrics)
    assert requests(metrics, "/results/{name}", "200") == 2
    assert requests(metrics, "/api/v6/fetch/{id}", "200") == 1
    assert requests(metrics, "/results/abc.png", "200") == 0
    assert requests(metrics, "other", "200") == 0


def test_an_app_that_fails_before_answering_is_counted_as_500() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        route_like_the_router(scope)
        raise RuntimeError("boom")

    metrics = Metrics()
    with pytest.raises(RuntimeError, match="boom"):
        context(failing, "/healthz", metrics)
    assert requests(metrics, "/healthz", "500") == 1
    assert observed(metrics, "/healthz")[0] == 1


def test_a_route_that_is_not_a_path_is_counted_as_other() -> None:
    async def odd(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = object()  # no `path`: a label would be a guess
        await send({"type": "http.response.start", "status": 200})

    _, metrics = context(odd, "/healthz")
    assert requests(metrics, "other", "200") == 1


class FakeTime:
    """Stands in for the `time` module in middleware.py: perf_counter reads these values."""

    def __init__(self, readings: list[float]) -> None:
        self.readings: Iterator[float] = iter(readings)

    def perf_counter(self) -> float:
        return next(self.readings)


def test_the_latency_observed_is_the_time_the_request_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(middleware, "time", FakeTime([100.0, 100.25]))
    app, _ = responder()
    _, metrics = context(app, "/healthz")
    assert observed(metrics, "/healthz") == (1.0, 0.25)


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_request_context_passes_other_scopes_through_untouched(kind: str) -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    metrics = Metrics()
    scope: Scope = {"type": kind}
    receive, send = FakeReceive([]), FakeSend()
    call(RequestContext(app, metrics=metrics), scope, receive, send)
    assert seen == [(scope, receive, send)]
    assert seen[0][1] is receive and seen[0][2] is send
    assert scope == {"type": kind}  # no request id added
    assert b"matte_requests_total{" not in metrics.render()


# --- BodyLimit: time -------------------------------------------------------------------------


class SlowReceive:
    """Hands out `messages`, each after its delay in seconds."""

    def __init__(self, timed: list[tuple[float, Message]]) -> None:
        self.timed = list(timed)

    async def __call__(self) -> Message:
        delay, message = self.timed.pop(0)
        await asyncio.sleep(delay)
        return message


class TimedReader:
    """Reads the body, noting the messages and the RequestTimeout (if any)."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.error: RequestTimeout | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            for _ in range(100):
                message = await receive()
                self.received.append(message)
                if not message.get("more_body", False):
                    break
        except RequestTimeout as exc:
            self.error = exc
        await send({"type": "http.response.start", "status": 200, "headers": []})


def timed(
    timed_messages: list[tuple[float, Message]], **limits: float
) -> tuple[TimedReader, FakeSend]:
    reader, send = TimedReader(), FakeSend()
    app = BodyLimit(reader, max_bytes=1000, **limits)
    call(app, http_scope(headers=[(b"content-length", b"30")]), SlowReceive(timed_messages), send)
    return reader, send


def body(size: int, more: bool = True) -> Message:
    return {"type": "http.request", "body": b"x" * size, "more_body": more}


def test_a_pause_past_the_idle_timeout_is_408() -> None:
    reader, send = timed([(0.0, body(10)), (0.3, body(10, more=False))], idle_timeout_s=0.1)
    assert reader.error is not None and reader.error.status == 408
    assert reader.error.messages == ("body: nothing arrived for 0.1 seconds",)
    assert len(reader.received) == 1
    assert (b"connection", b"close") in send.messages[0]["headers"]


def test_pauses_within_the_idle_timeout_pass() -> None:
    reader, send = timed(
        [(0.05, body(10)), (0.05, body(10)), (0.05, body(10, more=False))], idle_timeout_s=0.3
    )
    assert reader.error is None and len(reader.received) == 3
    # The body was all read: the connection may be kept.
    assert send.messages[0]["headers"] == []


def test_a_body_slower_than_the_minimum_rate_after_the_grace_is_408() -> None:
    # 10 bytes every 50 ms (200 bytes/s) against 1000 bytes/s after 0.1 s of grace:
    # cut off once 0.1 s + received/1000 has passed, at the third or fourth read.
    messages = [(0.05, body(10)) for _ in range(20)]
    reader, _ = timed(messages, idle_timeout_s=10, timeout_s=0.1, min_rate=1000)
    assert reader.error is not None
    assert reader.error.messages == (
        "body: arrived slower than 1000 bytes a second after the first 0.1 seconds",
    )
    assert 1 <= len(reader.received) <= 4


def test_a_body_at_the_minimum_rate_is_never_cut_off() -> None:
    # 100 bytes every 50 ms is 2000 bytes/s, over the 1000 asked: it may take its time.
    messages = [(0.05, body(100)) for _ in range(9)] + [(0.05, body(100, more=False))]
    reader, _ = timed(messages, idle_timeout_s=10, timeout_s=0.1, min_rate=1000)
    assert reader.error is None and len(reader.received) == 10


def test_waiting_for_a_disconnect_after_the_body_is_not_timed() -> None:
    # An app may listen for the client going away for as long as its work takes.
    reader, _ = timed(
        [(0.0, body(30, more=False)), (0.3, {"type": "http.disconnect"})], idle_timeout_s=0.1
    )
    assert reader.error is None

    async def listen(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "http.request"
        assert (await receive())["type"] == "http.disconnect"

    app = BodyLimit(listen, max_bytes=1000, idle_timeout_s=0.1)
    receive = SlowReceive([(0.0, body(30, more=False)), (0.3, {"type": "http.disconnect"})])
    call(app, http_scope(), receive)


@pytest.mark.parametrize(
    ("headers", "closes"),
    [
        ([(b"content-length", b"30")], True),
        ([(b"transfer-encoding", b"chunked")], True),
        ([(b"content-length", b"0")], False),
        ([], False),
    ],
    ids=["length", "chunked", "empty", "no-body"],
)
def test_a_response_before_the_body_was_read_closes_the_connection(
    headers: list[tuple[bytes, bytes]], closes: bool
) -> None:
    async def early(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 401, "headers": [(b"a", b"b")]})

    send = FakeSend()
    call(BodyLimit(early, max_bytes=10), http_scope(headers=headers), FakeReceive([]), send)
    expected = [(b"a", b"b"), (b"connection", b"close")] if closes else [(b"a", b"b")]
    assert send.messages[0]["headers"] == expected


def test_a_413_closes_the_connection() -> None:
    send = FakeSend()
    reader = Reader()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await reader(scope, receive, send)
        await send({"type": "http.response.start", "status": 413})

    scope = http_scope(headers=[(b"content-length", b"11")])
    call(BodyLimit(app, max_bytes=10), scope, FakeReceive(chunks(11)), send)
    assert reader.error is not None
    assert send.messages[0]["headers"] == [(b"connection", b"close")]
