"""Admission: the bounded line in front of the pipeline, first come first served."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from server.admission import Admission, Ticket
from server.app import create_app
from server.errors import Unavailable
from server.metrics import Metrics
from server.settings import Settings
from tests.conftest import KEY, PATH, jpeg, post, wait_ready
from tests.fakes import BrightnessEngine, post_scope


class BlockingEngine(BrightnessEngine):
    """Holds every run after the warm-up until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.any():  # not the warm-up's all-zero input
            self.started.set()
            assert self.release.wait(30)
        return super().run(batch)


def gauge(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


def rejected(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("matte_rejected_total", {"reason": reason}) or 0.0


async def hold(admission: Admission, order: list[str], name: str, until: asyncio.Event) -> None:
    """One request: take a ticket, wait for a slot, note when it got in, hold it."""
    with admission.ticket() as ticket:
        async with ticket.slot():
            order.append(name)
            await until.wait()


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


def test_beyond_the_uploads_is_refused_at_once() -> None:
    metrics = Metrics()
    admission = Admission(slots=1, line=5, max_wait_s=10, metrics=metrics, uploads=3)
    with admission.ticket(), admission.ticket(), admission.ticket():
        with pytest.raises(Unavailable) as refused, admission.ticket():
            pass  # pragma: no cover - never entered
        assert refused.value.status == 503
        assert refused.value.messages == (
            "server: too many requests in progress, please retry shortly",
        )
        assert refused.value.headers == {"retry-after": "1"}
        assert gauge(metrics, "matte_requests_waiting") == 3
        assert admission.uploading == 3
    assert rejected(metrics, "overloaded") == 1
    assert gauge(metrics, "matte_requests_waiting") == 0
    assert admission.uploading == 0
    with admission.ticket():  # room again once they left
        pass


def test_uploads_do_not_fill_the_line() -> None:
    """Fifty clients still sending their bodies hold uploads, not places in line:
    a request whose body is in still gets the slot."""

    async def main() -> None:
        admission = Admission(slots=1, line=1, max_wait_s=10, metrics=Metrics(), uploads=60)
        with contextlib.ExitStack() as uploads:
            for _ in range(50):
                uploads.enter_context(admission.ticket())
            order: list[str] = []
            done = asyncio.Event()
            done.set()
            await asyncio.wait_for(hold(admission, order, "quick", done), 1)
            assert order == ["quick"]
            assert admission.uploading == 50 and admission.waiting == 0
        assert admission.uploading == 0

    run(main)


def test_with_the_slots_and_the_line_full_a_newcomer_is_refused_before_its_upload() -> None:
    async def main() -> None:
        metrics = Metrics()
        admission = Admission(slots=1, line=1, max_wait_s=10, metrics=metrics, uploads=10)
        release = asyncio.Event()
        a = asyncio.create_task(hold(admission, [], "a", release))
        b = asyncio.create_task(hold(admission, [], "b", release))
        await asyncio.sleep(0.01)  # a holds the slot, b is in line
        assert admission.busy_slots == 1 and admission.waiting == 1
        with pytest.raises(Unavailable, match="too many requests"), admission.ticket():
            pass  # pragma: no cover - never entered
        assert rejected(metrics, "overloaded") == 1
        release.set()
        await asyncio.gather(a, b)

    run(main)


def test_a_body_that_completes_when_the_line_is_full_is_refused() -> None:
    async def main() -> None:
        metrics = Metrics()
        admission = Admission(slots=1, line=1, max_wait_s=10, metrics=metrics, uploads=10)
        release = asyncio.Event()
        with admission.ticket() as late:  # let in while the line still had room
            a = asyncio.create_task(hold(admission, [], "a", release))
            b = asyncio.create_task(hold(admission, [], "b", release))
            await asyncio.sleep(0.01)
            with pytest.raises(Unavailable, match="too many requests"):
                async with late.slot():
                    pass  # pragma: no cover - never entered
            assert admission.uploading == 0 and admission.waiting == 1
        assert rejected(metrics, "overloaded") == 1
        assert gauge(metrics, "matte_requests_waiting") == 1  # b alone
        release.set()
        await asyncio.gather(a, b)
        assert gauge(metrics, "matte_requests_waiting") == 0

    run(main)


def test_the_line_is_in_the_order_the_bodies_completed() -> None:
    async def main() -> None:
        admission = Admission(slots=1, line=5, max_wait_s=10, metrics=Metrics(), uploads=10)
        order: list[str] = []
        release = asyncio.Event()
        holder = asyncio.create_task(hold(admission, order, "holder", release))
        await asyncio.sleep(0)
        with admission.ticket() as first, admission.ticket() as second:
            # `first` took its ticket first but its body is in last.

            async def enter(ticket: Ticket, name: str) -> None:
                async with ticket.slot():
                    order.append(name)

            b = asyncio.create_task(enter(second, "second"))
            await asyncio.sleep(0)
            a = asyncio.create_task(enter(first, "first"))
            await asyncio.sleep(0.01)
            release.set()
            await asyncio.gather(holder, a, b)
        assert order == ["holder", "second", "first"]

    run(main)


def test_closing_refuses_the_line_and_newcomers() -> None:
    async def main() -> None:
        metrics = Metrics()
        admission = Admission(slots=1, line=5, max_wait_s=10, metrics=metrics, uploads=10)
        order: list[str] = []
        release = asyncio.Event()
        a = asyncio.create_task(hold(admission, order, "a", release))
        b = asyncio.create_task(hold(admission, order, "b", asyncio.Event()))
        await asyncio.sleep(0.01)
        with admission.ticket() as uploading:
            admission.close()
            with pytest.raises(Unavailable) as waited:
                await b
            assert waited.value.messages == ("server: shutting down, please retry shortly",)
            with pytest.raises(Unavailable, match="shutting down"):
                async with uploading.slot():
                    pass  # pragma: no cover - never entered
        with pytest.raises(Unavailable, match="shutting down"), admission.ticket():
            pass  # pragma: no cover - never entered
        release.set()
        await a  # the one in the pipeline finishes
        assert order == ["a"]
        assert admission.busy_slots == 0
        assert rejected(metrics, "queue_timeout") == 0
        assert gauge(metrics, "matte_requests_waiting") == 0

    run(main)


def test_a_freed_slot_goes_to_the_oldest_waiter() -> None:
    async def main() -> None:
        metrics = Metrics()
        admission = Admission(slots=1, line=5, max_wait_s=10, metrics=metrics, uploads=10)
        order: list[str] = []
        gates = {name: asyncio.Event() for name in "abcd"}
        tasks = []
        for name in "abcd":
            tasks.append(asyncio.create_task(hold(admission, order, name, gates[name])))
            await asyncio.sleep(0)  # arrive in this order
        await asyncio.sleep(0.01)
        assert order == ["a"]
        assert gauge(metrics, "matte_images_in_flight") == 1
        assert gauge(metrics, "matte_requests_waiting") == 3
        # A newcomer that arrives as a slot frees queues behind the others.
        late = asyncio.create_task(hold(admission, order, "e", asyncio.Event()))
        await asyncio.sleep(0)
        for name in "abcd":
            gates[name].set()
            await asyncio.sleep(0.01)
        assert order == ["a", "b", "c", "d", "e"]
        late.cancel()
        await asyncio.gather(*tasks, late, return_exceptions=True)
        assert admission.busy_slots == 0
        assert gauge(metrics, "matte_images_in_flight") == 0
        assert gauge(metrics, "matte_requests_waiting") == 0

    run(main)


def test_a_wait_past_the_limit_is_503() -> None:
    async def main() -> None:
        metrics = Metrics()
        admission = Admission(slots=1, line=1, max_wait_s=0.05, metrics=metrics, uploads=10)
        release = asyncio.Event()
        holder = asyncio.create_task(hold(admission, [], "a", release))
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Unavailable) as refused, admission.ticket() as ticket:
            async with ticket.slot():
                pass  # pragma: no cover - never entered
        assert 0.04 <= loop.time() - started < 1
        assert refused.value.messages == (
            "server: no capacity within 0.05 seconds, please retry shortly",
        )
        assert refused.value.headers == {"retry-after": "1"}
        assert rejected(metrics, "queue_timeout") == 1
        assert rejected(metrics, "overloaded") == 0
        assert not admission._waiters  # the one that gave up left nothing in the line
        assert gauge(metrics, "matte_requests_waiting") == 0
        assert admission.busy_slots == 1  # still the holder's, not lost or doubled
        release.set()
        await holder
        assert admission.busy_slots == 0

    run(main)


def test_with_no_wait_allowed_a_request_that_must_wait_is_refused_at_once() -> None:
    async def main() -> None:
        metrics = Metrics()
        admission = Admission(slots=1, line=1, max_wait_s=0.0, metrics=metrics, uploads=10)
        release = asyncio.Event()
        holder = asyncio.create_task(hold(admission, [], "a", release))
        await asyncio.sleep(0)
        with pytest.raises(Unavailable) as refused, admission.ticket() as ticket:
            async with ticket.slot():
                pass  # pragma: no cover - never entered
        # Whole seconds are written without a fraction: "0", not "0.0".
        assert refused.value.messages == (
            "server: no capacity within 0 seconds, please retry shortly",
        )
        assert rejected(metrics, "queue_timeout") == 1
        release.set()
        await holder
        assert admission.busy_slots == 0

    run(main)


def test_a_waiter_that_goes_away_loses_no_slot() -> None:
    async def main() -> None:
        metrics = Metrics()
        admission = Admission(slots=1, line=3, max_wait_s=10, metrics=metrics, uploads=10)
        order: list[str] = []
        release_a, release_c = asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(hold(admission, order, "a", release_a))
        await asyncio.sleep(0)
        b = asyncio.create_task(hold(admission, order, "b", asyncio.Event()))
        c = asyncio.create_task(hold(admission, order, "c", release_c))
        await asyncio.sleep(0.01)
        b.cancel()  # the client of b disconnected while in line
        await asyncio.sleep(0)
        release_a.set()
        await asyncio.sleep(0.01)
        assert order == ["a", "c"]
        release_c.set()
        await asyncio.gather(a, b, c, return_exceptions=True)
        assert b.cancelled()  # its own cancellation, not turned into a 503
        assert admission.busy_slots == 0
        assert rejected(metrics, "queue_timeout") == 0

    run(main)


def test_a_waiter_that_goes_away_behind_another_hands_nothing_on() -> None:
    async def main() -> None:
        admission = Admission(slots=1, line=3, max_wait_s=10, metrics=Metrics(), uploads=10)
        order: list[str] = []
        release_a, release_c = asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(hold(admission, order, "a", release_a))
        await asyncio.sleep(0)
        c = asyncio.create_task(hold(admission, order, "c", release_c))
        b = asyncio.create_task(hold(admission, order, "b", asyncio.Event()))
        await asyncio.sleep(0.01)
        b.cancel()  # b had no slot: its leaving must not let c in beside a
        await asyncio.sleep(0.01)
        assert order == ["a"]
        assert admission.busy_slots == 1
        release_a.set()
        await asyncio.sleep(0.01)
        assert order == ["a", "c"]
        release_c.set()
        await asyncio.gather(a, b, c, return_exceptions=True)
        assert admission.busy_slots == 0

    run(main)


def test_a_waiter_passed_over_while_it_leaves_goes_quietly() -> None:
    async def main() -> None:
        admission = Admission(slots=1, line=3, max_wait_s=10, metrics=Metrics(), uploads=10)
        order: list[str] = []
        with admission.ticket() as mine:
            async with mine.slot():
                b = asyncio.create_task(hold(admission, order, "b", asyncio.Event()))
                await asyncio.sleep(0.01)  # b waits for the slot
                # b's client goes away, and the slot frees before b runs again: the release
                # skips b's cancelled waiter, so b no longer finds itself in the line.
                b.cancel()
        await asyncio.gather(b, return_exceptions=True)
        assert b.cancelled()  # its own cancellation, not an error from leaving the line
        assert order == [] and admission.busy_slots == 0
        c = asyncio.create_task(hold(admission, order, "c", asyncio.Event()))
        await asyncio.sleep(0.01)
        assert order == ["c"]
        c.cancel()
        await asyncio.gather(c, return_exceptions=True)

    run(main)


def test_a_slot_handed_to_a_waiter_that_just_went_away_passes_to_the_next() -> None:
    async def main() -> None:
        metrics = Metrics()
        admission = Admission(slots=1, line=3, max_wait_s=10, metrics=metrics, uploads=10)
        order: list[str] = []
        release_c = asyncio.Event()
        with admission.ticket() as mine:
            async with mine.slot():
                b = asyncio.create_task(hold(admission, order, "b", asyncio.Event()))
                c = asyncio.create_task(hold(admission, order, "c", release_c))
                await asyncio.sleep(0.01)  # both wait, b first
            # Leaving the block handed the slot to b; b goes away before it runs.
            b.cancel()
        await asyncio.sleep(0.01)
        assert order == ["c"]
        assert b.cancelled()
        release_c.set()
        await c
        assert admission.busy_slots == 0
        assert gauge(metrics, "matte_images_in_flight") == 0
        assert gauge(metrics, "matte_requests_waiting") == 0

    run(main)


def test_a_slot_handed_over_as_the_wait_times_out_is_kept() -> None:
    async def main() -> None:
        metrics = Metrics()
        admission = Admission(slots=1, line=1, max_wait_s=0.05, metrics=metrics, uploads=10)
        order: list[str] = []
        release_a, release_b = asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(hold(admission, order, "a", release_a))
        await asyncio.sleep(0)
        b = asyncio.create_task(hold(admission, order, "b", release_b))
        await asyncio.sleep(0)  # b waits, its 0.05 s timer running
        release_a.set()  # a's wake-up is queued first ...
        # ... then the loop is held past b's deadline, so in the next pass a hands
        # its slot to b and b's timer fires, before b itself runs.
        time.sleep(0.1)
        await asyncio.sleep(0.01)
        # b was given the slot: it keeps it rather than dropping it with a 503.
        assert order == ["a", "b"]
        assert rejected(metrics, "queue_timeout") == 0
        assert admission.busy_slots == 1
        release_b.set()
        await asyncio.gather(a, b)
        assert admission.busy_slots == 0

    run(main)


@pytest.mark.parametrize(
    ("slots", "line", "uploads", "max_wait_s", "valid"),
    [
        (1, 0, 1, 0.0, True),
        (0, 5, 1, 1.0, False),
        (1, -1, 1, 1.0, False),
        (1, 5, 0, 1.0, False),
        (1, 5, 1, -0.001, False),
    ],
)
def test_admission_needs_a_slot_an_upload_and_no_negative_bounds(
    slots: int, line: int, uploads: int, max_wait_s: float, valid: bool
) -> None:
    if valid:
        admission = Admission(slots, line, max_wait_s, Metrics(), uploads=uploads)
        assert (admission.slots, admission.line, admission.max_wait_s) == (slots, line, max_wait_s)
        assert admission.uploads == uploads
        assert admission.busy_slots == 0
        return
    with pytest.raises(ValueError, match=r"^admission needs at least one slot and no negative"):
        Admission(slots, line, max_wait_s, Metrics(), uploads=uploads)


def test_a_ticket_that_never_takes_a_slot_leaves_the_gauges_as_they_were() -> None:
    # E.g. a request refused while its form is read: it was waiting, never in flight.
    metrics = Metrics()
    admission = Admission(slots=1, line=1, max_wait_s=1, metrics=metrics, uploads=10)
    with admission.ticket():
        assert gauge(metrics, "matte_requests_waiting") == 1
    assert gauge(metrics, "matte_requests_waiting") == 0
    assert gauge(metrics, "matte_images_in_flight") == 0
    assert admission.busy_slots == 0


def test_a_slot_moves_a_request_from_waiting_to_in_flight() -> None:
    async def main() -> None:
        metrics = Metrics()
        admission = Admission(slots=2, line=0, max_wait_s=1, metrics=metrics, uploads=10)
        with admission.ticket() as ticket:
            async with ticket.slot():
                assert gauge(metrics, "matte_requests_waiting") == 0
                assert gauge(metrics, "matte_images_in_flight") == 1
                assert admission.busy_slots == 1
            assert gauge(metrics, "matte_images_in_flight") == 0
            assert admission.busy_slots == 0
        assert gauge(metrics, "matte_requests_waiting") == 0

    run(main)


def test_a_ticket_admits_one_image() -> None:
    async def main() -> None:
        admission = Admission(slots=2, line=0, max_wait_s=1, metrics=Metrics(), uploads=10)
        with admission.ticket() as ticket:
            async with ticket.slot():
                pass
            with pytest.raises(RuntimeError, match=r"^a ticket admits one image$"):
                async with ticket.slot():
                    pass  # pragma: no cover - never entered
        assert admission.busy_slots == 0

    run(main)


def test_a_full_server_refuses_before_reading_the_upload(tmp_path: Path) -> None:
    """The 503 comes from the headers alone: the body is never pulled from the client."""
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}), max_pending=1, max_queue=1)
    engine = BlockingEngine()
    app = create_app(settings, engine=engine)
    reads: list[int] = []
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        reads.append(1)
        return {"type": "http.request", "body": b"--b\r\n", "more_body": True}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = post_scope(
        PATH,
        [
            (b"authorization", f"Bearer {KEY}".encode()),
            (b"content-type", b"multipart/form-data; boundary=b"),
            (b"content-length", b"5000000"),
        ],
        client=("127.0.0.1", 5000),
        server=("127.0.0.1", 8000),
    )
    with TestClient(app) as client:
        wait_ready(client)
        pipeline = app.state.services.pipeline
        admission = pipeline.admission
        with ThreadPoolExecutor(2) as pool:
            # One request at the model (held there), one in line behind it.
            busy = [pool.submit(post, client, jpeg()) for _ in range(2)]
            assert engine.started.wait(10)
            deadline = time.monotonic() + 10
            while admission.waiting < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert admission.busy_slots == 1 and admission.waiting == 1
            asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
            engine.release.set()
            assert [future.result().status_code for future in busy] == [200, 200]
    assert sent[0]["status"] == 503
    assert reads == []
