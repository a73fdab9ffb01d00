"""Admission: how many requests the server holds, and in what order they get in.

Two bounds, checked at different moments:

- `slots`: images in the pipeline at once (decoded, at the model, being encoded).
  A 4 MP image costs ~60 MB there, so this bound is what caps memory.
- `line`: requests past the door but not yet in the pipeline, either still
  uploading their body or waiting for a slot. A waiting request holds only its
  compressed upload (at most the body limit).

A request takes a ticket before its body is read. When the slots and the line
are both full it is refused with 503 at once, without reading the upload.
Otherwise it reads its body and waits for a slot in arrival order; a slot that
frees goes to the oldest waiter, never to whoever asks next. So a client that
retries quickly cannot starve one that has been waiting, and nobody waits for
longer than `max_wait_s` (then 503).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator

from .errors import Unavailable
from .metrics import Metrics


class Admission:
    def __init__(self, slots: int, line: int, max_wait_s: float, metrics: Metrics) -> None:
        if slots < 1 or line < 0 or max_wait_s < 0:
            raise ValueError("admission needs at least one slot and no negative bounds")
        self.slots = slots
        self.line = line
        self.max_wait_s = max_wait_s
        self._metrics = metrics
        self._free = slots
        self._inside = 0  # tickets out: in the line or holding a slot
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def busy_slots(self) -> int:
        return self.slots - self._free

    @contextlib.contextmanager
    def ticket(self) -> Iterator[Ticket]:
        """Enter, or raise 503 at once when the slots and the line are all taken."""
        if self._inside >= self.slots + self.line:
            self._metrics.rejected.labels("overloaded").inc()
            raise Unavailable("server: too many requests in progress, please retry shortly")
        self._inside += 1
        self._metrics.waiting.inc()
        ticket = Ticket(self)
        try:
            yield ticket
        finally:
            if not ticket.admitted:
                self._metrics.waiting.dec()
            self._inside -= 1

    async def _acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.max_wait_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as the wait ended (timeout or a
                # client that went away): keep it on a timeout, pass it on otherwise.
                if isinstance(exc, TimeoutError):
                    return
                self._hand_on()
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                self._metrics.rejected.labels("queue_timeout").inc()
                raise Unavailable(
                    f"server: no capacity within {self.max_wait_s:g} seconds, please retry shortly"
                ) from None
            raise

    def _hand_on(self) -> None:
        """A slot was released: give it to the oldest live waiter, else free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class Ticket:
    """One request's place: in the line until `slot()` lets it into the pipeline."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.admitted = False

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait (first come, first served) for a pipeline slot; hold it inside the block."""
        if self.admitted:
            raise RuntimeError("a ticket admits one image")
        admission = self._admission
        await admission._acquire()
        self.admitted = True
        admission._metrics.waiting.dec()
        admission._metrics.in_flight.inc()
        try:
            yield
        finally:
            admission._metrics.in_flight.dec()
            admission._hand_on()
