"""Clients that go away after their upload: their work is dropped, not done for nobody.

In-process, on the raw ASGI interface, so a test decides when each client's
connection closes (what `receive` answers `http.disconnect`), on a slow fake model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.types import Message

from server.admission import Admission
from server.app import create_app
from server.metrics import Metrics
from server.options import CutoutOptions
from server.pipeline import Decoded, Pipeline
from server.presence import ClientGone
from server.rendering import Rendered
from server.scheduler import Scheduler
from server.settings import Settings
from tests.conftest import AUTH, KEY, PATH, jpeg
from tests.fakes import BrightnessEngine, SlowEngine, post_scope

RUN_S = 1.5  # one model run: far longer than a client stays
LEAVE_S = 0.3  # each client closes its connection this long after its upload
CLIENTS = 18  # with the fake's 2 slots and a line of 16, every one is let in


@dataclasses.dataclass
class Answer:
    status: int = 0
    ended_s: float = math.inf  # since the burst started


def stability_request() -> tuple[list[tuple[bytes, bytes]], bytes]:
    request = httpx.Request(
        "POST",
        "http://matte.test" + PATH,
        headers=AUTH,
        files={"image": ("photo.jpg", jpeg(), "image/jpeg")},
    )
    body = request.read()
    headers = [(name.lower().encode(), value.encode()) for name, value in request.headers.items()]
    return headers, body


async def call(app: Starlette, started: float, leave: bool) -> Answer:
    """One POST; with `leave`, the client disconnects LEAVE_S after `started` (loop
    time), by when its upload is in: uploads here take no time, so all clients of a
    burst leave at the same moment. Without, it stays until it has its answer."""
    headers, body = stability_request()
    loop = asyncio.get_running_loop()
    answer = Answer()
    answered = asyncio.Event()
    uploaded = False

    async def receive() -> Message:
        nonlocal uploaded
        if not uploaded:
            uploaded = True
            return {"type": "http.request", "body": body, "more_body": False}
        if leave:
            await asyncio.sleep(max(0.0, started + LEAVE_S - loop.time()))
        else:
            await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            answer.ended_s = loop.time() - started
            answered.set()

    scope = post_scope(
        PATH,
        headers,
        client=("127.0.0.1", 40000),
        server=("matte.test", 80),
    )
    await app(scope, receive, send)
    return answer


def sample(app: Starlette, name: str, labels: dict[str, str] | None = None) -> float:
    value = app.state.services.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)


async def serving(app: Starlette) -> None:
    deadline = time.monotonic() + 30
    while app.state.services.readiness.state != "ready":
        assert time.monotonic() < deadline, "the app did not become ready"
        await asyncio.sleep(0.01)


@pytest.fixture
def engine() -> SlowEngine:
    return SlowEngine(RUN_S)


@pytest.fixture
def app(tmp_path: Path, engine: SlowEngine) -> Starlette:
    return create_app(Settings(cache_dir=tmp_path, api_keys=frozenset({KEY})), engine=engine)


def test_clients_that_leave_while_waiting_cost_no_model_run(
    app: Starlette, engine: SlowEngine
) -> None:
    async def main() -> tuple[list[Answer], Answer, float]:
        async with app.router.lifespan_context(app):
            await serving(app)
            started = asyncio.get_running_loop().time()
            gone = await asyncio.gather(*(call(app, started, leave=True) for _ in range(CLIENTS)))
            runs_when_all_left = engine.runs
            # The slots they held or waited for are free again: the next client is served.
            later = await call(app, asyncio.get_running_loop().time(), leave=False)
            return list(gone), later, runs_when_all_left

    gone, later, runs = asyncio.run(main())
    assert [answer.status for answer in gone] == [499] * CLIENTS
    # At most the one run already going when they left (the first client's, started
    # at once); 0 when the machine is so slow that its decode outlasted its stay.
    assert runs <= 1, runs
    # The other slot holder's prediction, queued behind that run, was cancelled and
    # skipped; waiters in line left it without decoding their upload.
    assert engine.runs == runs + 1  # the later client's
    assert sample(app, "matte_stage_seconds_count", {"stage": "decode"}) <= 2 + 1
    # Those in line answered as they left, not after the running model released its slot.
    waiters = sorted(answer.ended_s for answer in gone)[: CLIENTS - 2]
    assert max(waiters) < RUN_S - 0.3, waiters
    assert later.status == 200
    assert sample(app, "matte_rejected_total", {"reason": "disconnected"}) == CLIENTS
    assert sample(app, "matte_requests_total", {"route": PATH, "status": "499"}) == CLIENTS
    assert sample(app, "matte_requests_waiting") == 0
    assert sample(app, "matte_images_in_flight") == 0


def test_a_client_that_stays_is_not_dropped(app: Starlette, engine: SlowEngine) -> None:
    # Its connection is open until it has its answer: the watcher must not cut it short.
    async def main() -> Answer:
        async with app.router.lifespan_context(app):
            await serving(app)
            return await call(app, asyncio.get_running_loop().time(), leave=False)

    answer = asyncio.run(main())
    assert answer.status == 200 and engine.runs == 1
    assert sample(app, "matte_rejected_total", {"reason": "disconnected"}) == 0


def test_a_client_leaving_during_the_run_is_answered_at_once(
    app: Starlette, engine: SlowEngine
) -> None:
    # The run itself cannot be stopped (it finishes on its thread); the request
    # does not wait for it, and nothing after it is done.
    async def main() -> Answer:
        async with app.router.lifespan_context(app):
            await serving(app)
            return await call(app, asyncio.get_running_loop().time(), leave=True)

    answer = asyncio.run(main())
    assert answer.status == 499 and engine.runs == 1
    assert LEAVE_S <= answer.ended_s < RUN_S - 0.3, answer
    assert sample(app, "matte_stage_seconds_count", {"stage": "matte"}) == 0
    assert sample(app, "matte_stage_seconds_count", {"stage": "encode"}) == 0
    assert sample(app, "matte_rejected_total", {"reason": "disconnected"}) == 1


class SlowMattePipeline(Pipeline):
    def _matte(self, decoded: Decoded, prediction: np.ndarray, options: CutoutOptions) -> Rendered:
        time.sleep(MATTE_S)
        return super()._matte(decoded, prediction, options)


MATTE_S = 0.6


def test_a_client_leaving_during_matting_is_not_encoded_for(tmp_path: Path) -> None:
    metrics = Metrics()
    scheduler = Scheduler(BrightnessEngine())
    admission = Admission(slots=1, line=0, max_wait_s=5, metrics=metrics, uploads=1)
    pipeline = SlowMattePipeline(scheduler, admission, Settings(cache_dir=tmp_path), metrics)

    async def main() -> BaseException | None:
        async def receive() -> Message:
            await asyncio.sleep(MATTE_S / 3)  # matting has begun by then
            return {"type": "http.disconnect"}

        await scheduler.start()
        try:
            with admission.ticket() as ticket:
                await pipeline.cutout(ticket, jpeg(), CutoutOptions(), receive)
        except ClientGone as error:
            return error
        finally:
            await scheduler.stop()
        return None

    error = asyncio.run(main())
    assert isinstance(error, ClientGone) and error.where == "before encoding"
    assert metrics.registry.get_sample_value("matte_stage_seconds_count", {"stage": "matte"}) == 1
    assert (
        metrics.registry.get_sample_value("matte_stage_seconds_count", {"stage": "encode"}) is None
    )
    assert (
        metrics.registry.get_sample_value("matte_rejected_total", {"reason": "disconnected"}) == 1
    )
