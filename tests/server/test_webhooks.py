"""Webhook delivery against a local receiver: retries with back-off, bounds, refusals,
never blocking the sender, and shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from server.outbound import Outbound
from server.webhooks import ATTEMPTS, BACKOFF, FIRST_DELAY_S, MAX_PENDING, Webhooks
from tests.local_http import Answer, LocalServer, Received, answer


class Sleeps:
    """Records each wait instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def failing_first(failures: int, status: int = 500) -> LocalServer:
    count = 0

    def script(_: Received) -> Answer:
        nonlocal count
        count += 1
        return Answer(status if count <= failures else 200, {}, b"")

    return LocalServer(script)


def allowed(server: LocalServer) -> Outbound:
    return Outbound(True, allow_for_tests={("127.0.0.1", server.port)})


@pytest.fixture
def receiver() -> Iterator[LocalServer]:
    with LocalServer(answer(200)) as running:
        yield running


def deliver(webhooks: Webhooks, url: str, body: dict[str, object]) -> bool:
    async def run() -> bool:
        task = webhooks.send(url, body)
        assert task is not None
        return await task

    return asyncio.run(run())


def test_the_defaults() -> None:
    webhooks = Webhooks(Outbound(True))
    assert (ATTEMPTS, FIRST_DELAY_S, BACKOFF, MAX_PENDING) == (5, 1.0, 2.0, 256)
    assert webhooks.delays() == [1.0, 2.0, 4.0, 8.0]
    assert Webhooks(Outbound(True), attempts=1).delays() == []


def test_a_delivery_posts_the_json(receiver: LocalServer) -> None:
    sleeps = Sleeps()
    body = {"status": "success", "id": 7, "track_id": "t-1"}
    assert deliver(Webhooks(allowed(receiver), sleep=sleeps), f"{receiver.url}/hook?x=1", body)
    [received] = receiver.received
    assert received.method == "POST" and received.path == "/hook?x=1"
    assert received.headers["content-type"] == "application/json"
    assert json.loads(received.body) == body
    assert sleeps.waits == []


def test_failed_attempts_are_retried_with_exponential_back_off() -> None:
    with failing_first(2) as receiver:
        sleeps = Sleeps()
        assert deliver(Webhooks(allowed(receiver), sleep=sleeps), receiver.url, {"a": 1})
        assert len(receiver.received) == 3
        assert [json.loads(item.body) for item in receiver.received] == [{"a": 1}] * 3
        assert sleeps.waits == [1.0, 2.0]


def test_back_off_really_waits() -> None:
    with failing_first(2, status=503) as receiver:
        webhooks = Webhooks(allowed(receiver), first_delay_s=0.1, backoff=3.0)
        stamps: list[float] = []
        original = receiver.script

        def stamped(received: Received) -> Answer:
            stamps.append(time.monotonic())
            return original(received)

        receiver.script = stamped
        assert deliver(webhooks, receiver.url, {})
        assert len(stamps) == 3
        first, second = stamps[1] - stamps[0], stamps[2] - stamps[1]
        assert 0.1 <= first < 0.3 and 0.3 <= second < 0.6, (first, second)


def test_delivery_gives_up_after_the_last_attempt(caplog: pytest.LogCaptureFixture) -> None:
    with failing_first(100, status=404) as receiver:
        sleeps = Sleeps()
        with caplog.at_level(logging.INFO, logger="matte.webhooks"):
            assert not deliver(Webhooks(allowed(receiver), sleep=sleeps), receiver.url, {})
        assert len(receiver.received) == ATTEMPTS
        assert sleeps.waits == [1.0, 2.0, 4.0, 8.0]
    assert (
        caplog.messages[-1] == "webhook to 127.0.0.1 given up after 5 attempts: answered HTTP 404"
    )
    assert caplog.messages[0] == "webhook to 127.0.0.1 attempt 1 answered HTTP 404; retrying"


def test_attempts_bound_the_count() -> None:
    with failing_first(100) as receiver:
        sleeps = Sleeps()
        webhooks = Webhooks(allowed(receiver), attempts=2, sleep=sleeps)
        assert not deliver(webhooks, receiver.url, {})
        assert len(receiver.received) == 2 and sleeps.waits == [1.0]


def test_an_unreachable_receiver_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sleeps = Sleeps()
    outbound = Outbound(True, allow_for_tests={("127.0.0.1", port)})
    assert not deliver(Webhooks(outbound, sleep=sleeps), f"http://127.0.0.1:{port}/", {})
    assert sleeps.waits == [1.0, 2.0, 4.0, 8.0]


def test_a_refused_webhook_is_not_retried(
    receiver: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Loopback without the test hook: refused, and never sent.
    sleeps = Sleeps()
    with caplog.at_level(logging.WARNING, logger="matte.webhooks"):
        assert not deliver(Webhooks(Outbound(True), sleep=sleeps), f"{receiver.url}/hook", {})
    assert receiver.received == [] and sleeps.waits == []
    assert caplog.messages == [
        "webhook to 127.0.0.1 refused: points at a private, loopback, link-local or "
        "reserved address, which is refused"
    ]


def test_send_never_waits_for_the_receiver() -> None:
    with LocalServer(lambda _: Answer(200, {}, b"", delay_s=0.5)) as receiver:
        webhooks = Webhooks(allowed(receiver))

        async def run() -> tuple[float, bool]:
            started = time.monotonic()
            task = webhooks.send(receiver.url, {"a": 1})
            elapsed = time.monotonic() - started
            assert task is not None and webhooks.pending == 1
            return elapsed, await task

        elapsed, delivered = asyncio.run(run())
        assert elapsed < 0.1 and delivered
        assert webhooks.pending == 0


def test_close_cancels_pending_deliveries(receiver: LocalServer) -> None:
    async def forever(seconds: float) -> None:
        await asyncio.Event().wait()

    async def run() -> None:
        with failing_first(100) as failing:
            webhooks = Webhooks(allowed(failing), sleep=forever)
            task = webhooks.send(failing.url, {})
            assert task is not None
            for _ in range(500):  # bounded: until the first attempt has failed
                if failing.received:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert webhooks.pending == 1
            await webhooks.close()
            assert task.cancelled() and webhooks.pending == 0
            # Shut down: nothing new starts.
            assert webhooks.send(failing.url, {}) is None
            assert len(failing.received) == 1

    asyncio.run(asyncio.wait_for(run(), 20))


def test_pending_deliveries_are_bounded(receiver: LocalServer) -> None:
    gate = asyncio.Event()

    async def held(seconds: float) -> None:
        await gate.wait()

    async def run() -> None:
        with failing_first(100) as failing:
            webhooks = Webhooks(allowed(failing), max_pending=2, sleep=held)
            first = webhooks.send(failing.url, {})
            second = webhooks.send(failing.url, {})
            assert first is not None and second is not None
            assert webhooks.send(failing.url, {}) is None
            assert webhooks.pending == 2
            await webhooks.close()

    asyncio.run(asyncio.wait_for(run(), 20))


@pytest.mark.parametrize(
    "changes",
    [{"attempts": 0}, {"first_delay_s": -1}, {"backoff": 0.5}, {"max_pending": 0}],
)
def test_bounds_are_checked(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Webhooks(Outbound(True), **changes)  # type: ignore[arg-type]
