"""Whether the client is still there, so the pipeline drops the work of one that has gone.

Once a request's body is read, ASGI's `receive()` has nothing more to give until
the client disconnects, when it answers `http.disconnect` (uvicorn, and the test
clients, which answer it once the response is complete). So one task waiting on
`receive()` learns of a disconnect the moment it happens, with no polling: each
wait of the request (for a pipeline slot, for the model) is raced against it,
and each costly stage checks it before it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

from starlette.requests import ClientDisconnect
from starlette.types import Receive

T = TypeVar("T")

log = logging.getLogger("matte.presence")


class ClientGone(ClientDisconnect):
    """The client disconnected after its upload: its work was dropped (`where` says when)."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class Presence:
    """An async context manager watching one request's connection while it is open.

    `receive` is the request's own, called only after its body has been read
    (before, the watcher would take the body's chunks). None: nobody to watch
    (the pipeline driven directly, as some tests do).
    """

    def __init__(self, receive: Receive | None) -> None:
        self._receive = receive
        self._left = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Presence:
        if self._receive is not None:
            self._watcher = asyncio.create_task(self._watch(self._receive))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    @property
    def gone(self) -> bool:
        return self._left.is_set()

    def check(self, where: str) -> None:
        """Raise ClientGone if the client has left; before a stage that costs CPU."""
        if self.gone:
            raise ClientGone(where)

    async def unless_gone(self, awaitable: Awaitable[T], where: str) -> T:
        """Await `awaitable`, or cancel it and raise ClientGone if the client leaves first.

        Cancelling hands back what the wait was for: a place in line goes to the
        next waiter, and a prediction still queued is skipped by the scheduler.
        """
        if self.gone and inspect.iscoroutine(awaitable):
            # Never to be awaited: closed, so it is not reported as forgotten.
            awaitable.close()
        self.check(where)
        if self._watcher is None:
            return await awaitable
        work = asyncio.ensure_future(awaitable)
        left = asyncio.ensure_future(self._left.wait())
        try:
            await asyncio.wait((work, left), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            raise
        finally:
            left.cancel()
        if self.gone:
            # Even when the wait ended at the same moment: what it got (a slot, held
            # by the caller's exit stack; a prediction) is no use to anyone now.
            work.cancel()
            # Let it clean up (leave the line) before the request ends.
            with contextlib.suppress(asyncio.CancelledError):
                await work
            raise ClientGone(where)
        return work.result()

    async def _watch(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass  # a body chunk nobody reads any more
        except Exception:
            # The server's receive failed: nothing is known, so the work goes on.
            log.debug("cannot watch the connection", exc_info=True)
            return
        self._left.set()
