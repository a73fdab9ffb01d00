"""The scheduler: bounded, batched model runs off the event loop (on the CPU, with a fake)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from server.scheduler import Scheduler, SchedulerStopped
from tests.fakes import BrightnessEngine


class SlowEngine(BrightnessEngine):
    """Records how many runs overlap and on which thread they run."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.running = 0
        self.most_at_once = 0
        self.threads: set[int] = set()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.threads.add(threading.get_ident())
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
        return super().run(batch)


def image(value: int) -> np.ndarray:
    """A flat image at the model's size: the fake calls it foreground above mid-grey."""
    return np.full((1024, 1024, 3), value, dtype=np.uint8)


def run(engine: BrightnessEngine, count: int, **options: object) -> list[np.ndarray]:
    async def main() -> list[np.ndarray]:
        scheduler = Scheduler(engine, **options)  # type: ignore[arg-type]
        await scheduler.start()
        try:
            values = [230 if i % 2 else 25 for i in range(count)]
            return await asyncio.gather(*(scheduler.predict(image(v)) for v in values))
        finally:
            await scheduler.stop()

    return asyncio.run(main())


def test_each_request_gets_its_own_prediction_back() -> None:
    results = run(BrightnessEngine(), 9, batch_size=4, batch_timeout_s=0.05)
    for i, prediction in enumerate(results):
        assert prediction.shape == (1024, 1024)
        assert prediction.mean() == (1.0 if i % 2 else 0.0)


def test_concurrent_requests_share_batches_up_to_the_size() -> None:
    engine = BrightnessEngine()
    run(engine, 10, batch_size=4, batch_timeout_s=0.05)
    assert sum(engine.batches) == 10
    assert max(engine.batches) == 4
    assert len(engine.batches) == 3  # 4 + 4 + 2


def test_batch_size_one_runs_images_singly() -> None:
    engine = BrightnessEngine()
    run(engine, 5, batch_size=1)
    assert engine.batches == [1] * 5


@pytest.mark.parametrize("workers", [1, 2])
def test_runs_are_bounded_by_workers_and_off_the_event_loop(workers: int) -> None:
    engine = SlowEngine(0.02)
    run(engine, 8, workers=workers)
    assert engine.most_at_once == workers
    assert threading.get_ident() not in engine.threads


def test_engine_errors_reach_the_waiting_requests() -> None:
    class Failing(BrightnessEngine):
        def run(self, batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run(Failing(), 2, batch_size=2, batch_timeout_s=0.01)


def test_other_work_shares_the_model_threads() -> None:
    engine = SlowEngine(0.05)

    async def main() -> tuple[set[int], int]:
        scheduler = Scheduler(engine, workers=1)
        await scheduler.start()
        seen: set[int] = set()

        def matte() -> int:
            seen.add(threading.get_ident())
            with engine._lock:
                overlapping = engine.running
            return overlapping

        try:
            results = await asyncio.gather(
                scheduler.predict(image(150)),
                scheduler.run_bounded(matte),
                scheduler.predict(image(150)),
                scheduler.run_bounded(matte),
            )
        finally:
            await scheduler.stop()
        return seen, max(int(r) for r in results[1::2])

    threads, overlapping = asyncio.run(main())
    assert threads == engine.threads  # the same single worker thread
    assert overlapping == 0  # never while a model run was in progress


def test_stop_fails_requests_still_queued() -> None:
    engine = SlowEngine(0.2)

    async def main() -> list[object]:
        scheduler = Scheduler(engine, workers=1)
        await scheduler.start()
        running = asyncio.ensure_future(scheduler.predict(image(230)))
        queued = asyncio.ensure_future(scheduler.predict(image(230)))
        await asyncio.sleep(0.05)  # the first is at the model, the second waits
        await scheduler.stop()
        return await asyncio.gather(running, queued, return_exceptions=True)

    at_model, queued = asyncio.run(main())
    # Neither waits forever: the one at the model and the one still queued both get
    # an error the pipeline turns into 503.
    assert isinstance(at_model, SchedulerStopped)
    assert isinstance(queued, SchedulerStopped)
    assert engine.batches == [1]  # the queued image never reached the model


def test_predict_on_a_stopped_scheduler_is_refused() -> None:
    async def main() -> None:
        await Scheduler(BrightnessEngine()).predict(image(0))

    with pytest.raises(SchedulerStopped):
        asyncio.run(main())
