"""The scheduler: feeds model inputs to the engine off the event loop, in batches.

`workers` loops each take the first waiting image, gather more until they hold
`batch_size` or `batch_timeout` has passed, and run the batch on a thread of
their own. So at most `workers` model runs happen at once, whatever the number
of requests, and concurrent requests share a batch on a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from .engine import Engine

log = logging.getLogger("matte.scheduler")

T = TypeVar("T")
_Job = tuple[np.ndarray, asyncio.Future[np.ndarray]]


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        workers: int = 1,
        batch_size: int = 1,
        batch_timeout_s: float = 0.002,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.workers = workers
        self.batch_size = max(1, min(batch_size, engine.max_batch))
        self.batch_timeout_s = batch_timeout_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor: ThreadPoolExecutor | None = None
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="matte-predict")
        self._loops = [asyncio.create_task(self._serve()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops = []
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def predict(self, tensor: np.ndarray) -> np.ndarray:
        """(3, 1024, 1024) model input -> (1024, 1024) raw prediction."""
        if not self._loops:
            raise RuntimeError("scheduler is not started")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((tensor, future))
        return await future

    async def run_bounded(self, work: Callable[..., T], *args: object) -> T:
        """Run other heavy work (alpha matting) on the model's threads, so it shares
        the model's concurrency bound instead of oversubscribing the cores."""
        if self._executor is None:
            raise RuntimeError("scheduler is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    async def _serve(self) -> None:
        while True:
            jobs = await self._gather()
            if not jobs:
                continue
            try:
                batch = np.stack([tensor for tensor, _ in jobs])
                loop = asyncio.get_running_loop()
                predictions = await loop.run_in_executor(self._executor, self.engine.run, batch)
            except Exception as exc:  # handed to every waiting request, which renders a 500
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if self._on_batch is not None:
                self._on_batch(len(jobs))
            for (_, future), prediction in zip(jobs, predictions, strict=True):
                if not future.done():
                    future.set_result(prediction)

    async def _gather(self) -> list[_Job]:
        jobs = [await self._queue.get()]
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
        # A client that went away cancelled its future: spend no model time on it.
        return [job for job in jobs if not job[1].cancelled()]
