"""shutdown.py: a signal turns readiness "draining" at once, and the deadline refuses waiters.

The whole drain, over a real process and the real model, is tests/end_to_end/test_shutdown.py.
"""

from __future__ import annotations

import asyncio
import signal
from typing import cast

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.admission import Admission
from server.errors import Unavailable
from server.metrics import Metrics
from server.services import Services
from server.shutdown import GRACE_S, DrainingServer


def draining_server(app: Starlette, deadline_s: float = 30) -> DrainingServer:
    return DrainingServer(uvicorn.Config(app), app.state.services, deadline_s)


def test_sigterm_makes_readyz_503_at_once(app: Starlette, client: TestClient) -> None:
    server = draining_server(app)
    assert client.get("/readyz").status_code == 200
    server.handle_exit(signal.SIGTERM, None)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "draining"
    assert server.should_exit and not server.force_exit
    # Nothing for uvicorn to raise again once it is done: the process exits 0.
    assert server._captured_signals == []
    assert client.get("/healthz").status_code == 200  # alive while it drains


def test_a_second_sigint_forces_the_exit(app: Starlette) -> None:
    server = draining_server(app)
    server.handle_exit(signal.SIGINT, None)
    assert not server.force_exit
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit


def test_uvicorns_own_deadline_comes_after_the_drains(app: Starlette) -> None:
    assert draining_server(app, 12).config.timeout_graceful_shutdown == 12 + GRACE_S
    assert draining_server(app, 0.5).config.timeout_graceful_shutdown == 6


class StoppingScheduler:
    def __init__(self) -> None:
        self.stopped = 0

    async def stop(self) -> None:
        self.stopped += 1


class FakePipeline:
    def __init__(self) -> None:
        self.admission = Admission(1, 5, 30, Metrics(), uploads=5)
        self.scheduler = StoppingScheduler()


class FakeServices:
    def __init__(self, pipeline: FakePipeline | None) -> None:
        self.pipeline = pipeline


def test_at_the_deadline_requests_still_waiting_get_503(app: Starlette) -> None:
    pipeline = FakePipeline()
    server = DrainingServer(uvicorn.Config(app), cast(Services, FakeServices(pipeline)), 0.05)

    async def main() -> None:
        admission = pipeline.admission
        with admission.ticket() as holder, admission.ticket() as waiter:
            async with holder.slot():
                waiting = asyncio.create_task(waiter.slot().__aenter__())
                await asyncio.sleep(0.01)
                assert admission.waiting == 1
                started = asyncio.get_running_loop().time()
                await server._deadline()
                assert 0.04 <= asyncio.get_running_loop().time() - started < 1
                with pytest.raises(Unavailable, match="shutting down"):
                    await waiting
        assert pipeline.scheduler.stopped == 1
        assert admission.busy_slots == 0

    asyncio.run(main())


def test_the_deadline_without_a_model_does_nothing(app: Starlette) -> None:
    server = DrainingServer(uvicorn.Config(app), cast(Services, FakeServices(None)), 0)
    asyncio.run(server._deadline())
