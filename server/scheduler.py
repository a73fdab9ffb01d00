"""The scheduler: feeds model inputs to the engine off the event loop, in batches.

`workers` loops each take the first waiting image, gather more until they hold
`batch_size` or `batch_timeout` has passed, and run the batch on a thread of
their own. So at most `workers` model runs happen at once, whatever the number
of requests, and concurrent requests share a batch on a GPU.

A run that takes longer than `model_timeout_s` is abandoned: its requests get
`ModelTimedOut`, and since a thread cannot be killed, the pool it is stuck in is
replaced by a fresh one, so the loops keep serving on threads that are free.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from .engine import Engine
from .isnet import to_batch

log = logging.getLogger("matte.scheduler")

T = TypeVar("T")
_Job = tuple[np.ndarray, asyncio.Future[np.ndarray]]


class SchedulerStopped(RuntimeError):
    """A prediction was asked of a scheduler that is not running."""


class ModelTimedOut(RuntimeError):
    """The model run holding this prediction did not finish within `model_timeout_s`."""


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        workers: int = 1,
        batch_size: int = 1,
        batch_timeout_s: float = 0.002,
        on_batch: Callable[[int], None] | None = None,
        model_timeout_s: float = 120.0,
        on_timeout: Callable[[], None] | None = None,
        on_run: Callable[[float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.workers = workers
        self.batch_size = max(1, min(batch_size, engine.max_batch))
        self.batch_timeout_s = batch_timeout_s
        self._on_batch = on_batch
        self.model_timeout_s = model_timeout_s
        self._on_timeout = on_timeout
        self._on_run = on_run  # seconds of each model run, from its thread
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor: ThreadPoolExecutor | None = None
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._executor = _pool(self.workers)
        self._loops = [asyncio.create_task(self._serve()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops = []
        # Requests still queued (uvicorn's drain timed out) get an error now
        # instead of waiting forever on a future nobody will complete.
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(SchedulerStopped("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def predict(self, image: np.ndarray) -> np.ndarray:
        """(1024, 1024, 3) uint8 image at the model's size -> (1024, 1024) raw prediction."""
        if not self._loops:
            raise SchedulerStopped("scheduler is not started")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((image, future))
        return await future

    async def run_bounded(self, work: Callable[..., T], *args: object) -> T:
        """Run other heavy work (alpha matting) on the model's threads, so it shares
        the model's concurrency bound instead of oversubscribing the cores."""
        if self._executor is None:
            raise RuntimeError("scheduler is not started")
        # In the caller's context, as run_in_threadpool does: the request's log
        # line (server/request_log.py) gets the stage timed on this thread.
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, context.run, work, *args)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs: list[_Job] = []
            try:
                await self._gather(jobs)
                # A client that went away cancelled its future: spend no model time on it.
                jobs = [job for job in jobs if not job[1].cancelled()]
                if not jobs:
                    continue
                images = [image for image, _ in jobs]
                run = loop.run_in_executor(self._executor, self._run, images)
                try:
                    predictions = await asyncio.wait_for(run, self.model_timeout_s)
                except TimeoutError:
                    self._abandon(len(jobs))
                    raise ModelTimedOut(
                        f"the model did not answer within {self.model_timeout_s:g} s"
                    ) from None
            except asyncio.CancelledError:
                # stop(): whatever this loop holds, gathered or at the model, gets an
                # error now rather than a future nobody will complete.
                _fail(jobs, SchedulerStopped("the server is shutting down"))
                raise
            except Exception as exc:  # handed to every waiting request, which renders a 500
                _fail(jobs, exc)
                continue
            if self._on_batch is not None:
                self._on_batch(len(jobs))
            for (_, future), prediction in zip(jobs, predictions, strict=True):
                if not future.done():
                    future.set_result(prediction)

    def _abandon(self, images: int) -> None:
        """The run on this pool is stuck: new work goes to a fresh pool of `workers`
        threads (so the bound holds, but for the stuck thread). The old pool is shut
        down without waiting: its thread ends whenever the run returns. (Python
        joins it at exit, so a run that never returns holds up the process's exit.)"""
        log.error(
            "a model run of %d image(s) took over %g s: abandoned, its requests get 503",
            images,
            self.model_timeout_s,
        )
        stuck, self._executor = self._executor, _pool(self.workers)
        if stuck is not None:
            stuck.shutdown(wait=False)
        if self._on_timeout is not None:
            self._on_timeout()

    def _run(self, images: list[np.ndarray]) -> np.ndarray:
        # The float batch (12 MB an image) exists only for the run, on the worker thread.
        batch = to_batch(images)
        started = time.perf_counter()
        predictions = self.engine.run(batch)
        if self._on_run is not None:
            self._on_run(time.perf_counter() - started)
        return predictions

    async def _gather(self, jobs: list[_Job]) -> None:
        """Fill `jobs` (the caller's, so a cancellation cannot lose them) with one batch."""
        jobs.append(await self._queue.get())
        if self.batch_size > 1:
            deadline = asyncio.get_running_loop().time() + self.batch_timeout_s
            while len(jobs) < self.batch_size:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    if remaining <= 0:
                        jobs.append(self._queue.get_nowait())
                    else:
                        jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
                except (asyncio.QueueEmpty, TimeoutError):
                    break


def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="matte-predict")


def _fail(jobs: list[_Job], error: BaseException) -> None:
    for _, future in jobs:
        if not future.done():
            future.set_exception(error)
