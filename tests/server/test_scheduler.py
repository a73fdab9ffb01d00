"""The scheduler: bounded, batched model runs off the event loop (on the CPU, with a fake)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

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


class GateEngine(BrightnessEngine):
    """Holds every run until `gate` opens; notes the images (by value) each run was given."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.values: list[list[int]] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            # The model input is pixel/255 - 0.5: back to the flat image's value.
            self.values.append([round((float(x[0, 0, 0]) + 0.5) * 255) for x in batch])
        assert self.gate.wait(10), "the test never opened the gate"
        return super().run(batch)


async def until(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    """Wait (bounded) for something another task or thread does."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)


def image(value: int) -> np.ndarray:
    """A flat image at the model's size: the fake calls it foreground above mid-grey."""
    return np.full((1024, 1024, 3), value, dtype=np.uint8)


def run(engine: BrightnessEngine, count: int, **options: object) -> list[np.ndarray]:
    async def main() -> list[np.ndarray]:
        scheduler = Scheduler(engine, **options)  # type: ignore[arg-type]
        await scheduler.start()
        try:
            values = [230 if i % 2 else 25 for i in range(count)]
            predictions = asyncio.gather(*(scheduler.predict(image(v)) for v in values))
            return await asyncio.wait_for(predictions, 10)  # a lost request fails, not hangs
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


def test_stop_fails_requests_still_queued_and_at_the_model() -> None:
    engine = SlowEngine(0.2)

    async def main() -> list[object]:
        scheduler = Scheduler(engine, workers=1)
        await scheduler.start()
        running = asyncio.ensure_future(scheduler.predict(image(230)))
        await until(lambda: engine.running == 1)  # the first is at the model
        queued = asyncio.ensure_future(scheduler.predict(image(230)))
        await asyncio.sleep(0)  # the second waits in the queue
        await scheduler.stop()
        # stop() waited for the run in progress: no model thread is left behind.
        assert engine.running == 0
        both = asyncio.gather(running, queued, return_exceptions=True)
        return list(await asyncio.wait_for(both, 5))

    at_model, queued = asyncio.run(main())
    # Neither waits forever: the one at the model and the one still queued both get
    # an error the pipeline turns into 503.
    assert isinstance(at_model, SchedulerStopped)
    assert isinstance(queued, SchedulerStopped)
    assert str(at_model) == str(queued) == "the server is shutting down"
    assert engine.batches == [1]  # the queued image never reached the model


def test_stop_fails_a_request_gathered_for_a_batch_that_never_filled() -> None:
    engine = BrightnessEngine()

    async def main() -> None:
        # A long batch timeout: the one image waits inside the gather when stop() comes.
        scheduler = Scheduler(engine, batch_size=4, batch_timeout_s=30)
        await scheduler.start()
        waiting = asyncio.ensure_future(scheduler.predict(image(230)))
        await until(lambda: scheduler._queue.empty())  # taken by the loop
        await scheduler.stop()
        with pytest.raises(SchedulerStopped, match=r"^the server is shutting down$"):
            await asyncio.wait_for(waiting, 5)

    asyncio.run(main())
    assert engine.batches == []


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_request_cancelled_before_its_batch_runs_never_reaches_the_engine(
    batch_size: int,
) -> None:
    engine = GateEngine()
    sizes: list[int] = []

    async def main() -> None:
        scheduler = Scheduler(
            engine, batch_size=batch_size, batch_timeout_s=0.01, on_batch=sizes.append
        )
        await scheduler.start()
        try:
            first = asyncio.ensure_future(scheduler.predict(image(10)))
            await until(lambda: len(engine.values) == 1)  # at the model, the worker busy
            gone = asyncio.ensure_future(scheduler.predict(image(20)))
            kept = asyncio.ensure_future(scheduler.predict(image(30)))
            await asyncio.sleep(0)  # both queued behind the run in progress
            gone.cancel()  # its client went away
            engine.gate.set()
            first_result, kept_result = await asyncio.wait_for(asyncio.gather(first, kept), 5)
            assert first_result.mean() == 0.0 and kept_result.mean() == 0.0
            assert gone.cancelled()
        finally:
            engine.gate.set()
            await scheduler.stop()

    asyncio.run(main())
    # The model spent no time on the cancelled image: it saw only the other two.
    assert engine.values == [[10], [30]]
    assert engine.batches == [1, 1]
    assert sizes == [1, 1]  # the metric counts only the images run


def test_a_request_cancelled_while_at_the_model_does_not_stop_the_loop() -> None:
    engine = GateEngine()

    async def main() -> np.ndarray:
        scheduler = Scheduler(engine)
        await scheduler.start()
        try:
            gone = asyncio.ensure_future(scheduler.predict(image(20)))
            await until(lambda: len(engine.values) == 1)
            gone.cancel()
            await asyncio.sleep(0)
            engine.gate.set()  # its result arrives for a future nobody waits on
            return await asyncio.wait_for(scheduler.predict(image(230)), 5)
        finally:
            engine.gate.set()
            await scheduler.stop()

    assert asyncio.run(main()).mean() == 1.0
    assert engine.values == [[20], [230]]


def test_an_engine_error_fails_only_its_batch() -> None:
    class FailsOnce(BrightnessEngine):
        def __init__(self) -> None:
            super().__init__()
            self.failed = False

        def run(self, batch: np.ndarray) -> np.ndarray:
            if not self.failed:
                self.failed = True
                raise RuntimeError("boom")
            return super().run(batch)

    async def main() -> np.ndarray:
        scheduler = Scheduler(FailsOnce())
        await scheduler.start()
        try:
            with pytest.raises(RuntimeError, match=r"^boom$"):
                await scheduler.predict(image(230))
            return await asyncio.wait_for(scheduler.predict(image(230)), 5)
        finally:
            await scheduler.stop()

    assert asyncio.run(main()).mean() == 1.0


def test_a_batch_waits_up_to_the_timeout_for_more_images() -> None:
    engine = BrightnessEngine()

    async def main() -> None:
        # The second image fills the batch, so the run starts without the full second.
        scheduler = Scheduler(engine, batch_size=2, batch_timeout_s=1.0)
        await scheduler.start()
        try:
            first = asyncio.ensure_future(scheduler.predict(image(230)))
            await asyncio.sleep(0.05)  # well inside the batch timeout
            second = asyncio.ensure_future(scheduler.predict(image(25)))
            await asyncio.wait_for(asyncio.gather(first, second), 5)
        finally:
            await scheduler.stop()

    asyncio.run(main())
    assert engine.batches == [2]


def test_a_lone_image_waits_no_longer_than_the_batch_timeout() -> None:
    engine = BrightnessEngine()

    async def main() -> float:
        scheduler = Scheduler(engine, batch_size=4, batch_timeout_s=0.1)
        await scheduler.start()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await asyncio.wait_for(scheduler.predict(image(230)), 5)
            return loop.time() - started
        finally:
            await scheduler.stop()

    waited = asyncio.run(main())
    assert 0.09 <= waited < 1.0
    assert engine.batches == [1]


@pytest.mark.parametrize(
    ("asked", "max_batch", "expected"),
    [(8, 64, 8), (8, 2, 2), (1, 64, 1), (0, 64, 1), (-3, 64, 1), (64, 64, 64)],
)
def test_the_batch_size_is_at_least_one_and_at_most_the_engines(
    asked: int, max_batch: int, expected: int
) -> None:
    engine = BrightnessEngine()
    engine.max_batch = max_batch
    assert Scheduler(engine, batch_size=asked).batch_size == expected


def test_every_batch_is_reported_with_its_size() -> None:
    engine = BrightnessEngine()
    sizes: list[int] = []
    run(engine, 10, batch_size=4, batch_timeout_s=0.05, on_batch=sizes.append)
    assert sizes == engine.batches == [4, 4, 2]


def test_run_bounded_passes_the_arguments_and_returns_the_result() -> None:
    async def main() -> int:
        scheduler = Scheduler(BrightnessEngine(), workers=1)
        await scheduler.start()
        try:
            return await scheduler.run_bounded(pow, 2, 10)
        finally:
            await scheduler.stop()

    assert asyncio.run(main()) == 1024


def test_a_stopped_scheduler_refuses_other_work() -> None:
    async def main() -> None:
        scheduler = Scheduler(BrightnessEngine())
        with pytest.raises(RuntimeError, match=r"^scheduler is not started$"):
            await scheduler.run_bounded(pow, 2, 10)
        await scheduler.start()
        await scheduler.stop()
        with pytest.raises(RuntimeError, match=r"^scheduler is not started$"):
            await scheduler.run_bounded(pow, 2, 10)
        with pytest.raises(SchedulerStopped, match=r"^scheduler is not started$"):
            await asyncio.wait_for(scheduler.predict(image(0)), 5)

    asyncio.run(main())


def test_predict_on_a_scheduler_never_started_is_refused() -> None:
    async def main() -> None:
        await Scheduler(BrightnessEngine()).predict(image(0))

    with pytest.raises(SchedulerStopped, match=r"^scheduler is not started$"):
        asyncio.run(main())
