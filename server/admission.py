"""Admission: how many requests the server holds, and in what order they get in.

Three bounds, checked at different moments:

- `uploads`: requests still reading their body. Each holds at most the body
  limit, and a slow client (a phone on a bad link, or one trickling bytes on
  purpose) sits here for as long as its body takes (see middleware.BodyLimit),
  never in the line below, so it cannot crowd out others.
- `line`: requests whose body is in, waiting for a slot. A waiting request holds
  only its compressed upload (at most the body limit).
- `slots`: images in the pipeline at once (decoded, at the model, being encoded).
  A 4 MP image costs ~60 MB there, so this bound is what caps memory.

A request takes a ticket before its body is read. When the uploads are all taken,
or the slots and the line are both full, it is refused with 503 at once, without
reading the upload. Otherwise it reads its body, then joins the line (503 if it
filled up meanwhile) and waits for a slot in the order the bodies completed; a
slot that frees goes to the oldest waiter, never to whoever asks next. So a
client that retries quickly cannot starve one that has been waiting, and nobody
waits in line for longer than `max_wait_s` (then 503). Once `close`d (the
shutdown's deadline), every waiter and newcomer gets 503.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Literal

from .errors import Unavailable
from .metrics import Metrics

FULL = "server: too many requests in progress, please retry shortly"
CLOSED = "server: shutting down, please retry shortly"

Phase = Literal["uploading", "waiting", "admitted"]


class Admission:
    def __init__(
        self, slots: int, line: int, max_wait_s: float, metrics: Metrics, *, uploads: int
    ) -> None:
        if slots < 1 or line < 0 or uploads < 1 or max_wait_s < 0:
            raise ValueError("admission needs at least one slot and no negative bounds")
        self.slots = slots
        self.line = line
        self.uploads = uploads
        self.max_wait_s = max_wait_s
        self._metrics = metrics
        self._free = slots
        self._uploading = 0  # tickets reading their body
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def busy_slots(self) -> int:
        return self.slots - self._free

    @property
    def uploading(self) -> int:
        return self._uploading

    @property
    def waiting(self) -> int:
        """Requests in line for a slot."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    def close(self) -> None:
        """Refuse every waiter and newcomer from now on (503): the shutdown's deadline."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(Unavailable(CLOSED))

    @contextlib.contextmanager
    def ticket(self) -> Iterator[Ticket]:
        """Enter to upload, or raise 503 at once when the uploads, or the slots and
        the line, are all taken."""
        if self._closed:
            raise Unavailable(CLOSED)
        if self._uploading >= self.uploads or self._full():
            self._metrics.rejected.labels("overloaded").inc()
            raise Unavailable(FULL)
        self._uploading += 1
        self._metrics.waiting.inc()
        ticket = Ticket(self)
        try:
            yield ticket
        finally:
            if ticket.phase == "uploading":
                self._uploading -= 1
            if ticket.phase != "admitted":
                self._metrics.waiting.dec()

    def _full(self) -> bool:
        return self._free == 0 and self.waiting >= self.line

    def _join_line(self, ticket: Ticket) -> None:
        """The body is in: leave the uploads for the line, unless it is full."""
        self._uploading -= 1
        ticket.phase = "waiting"
        if self._closed:
            raise Unavailable(CLOSED)
        if self._full():
            self._metrics.rejected.labels("overloaded").inc()
            raise Unavailable(FULL)

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
            handed_over = waiter.done() and not waiter.cancelled() and waiter.exception() is None
            if handed_over:
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
    """One request's place: uploading, then in the line until `slot()` lets it into the pipeline."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.phase: Phase = "uploading"

    @property
    def admitted(self) -> bool:
        return self.phase == "admitted"

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """The body is in: join the line, wait (first come, first served) for a
        pipeline slot, and hold it inside the block."""
        if self.phase != "uploading":
            raise RuntimeError("a ticket admits one image")
        admission = self._admission
        admission._join_line(self)
        await admission._acquire()
        self.phase = "admitted"
        admission._metrics.waiting.dec()
        admission._metrics.in_flight.inc()
        try:
            yield
        finally:
            admission._metrics.in_flight.dec()
            admission._hand_on()
