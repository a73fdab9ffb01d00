"""server.presence: a request's connection watched through ASGI's receive()."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from starlette.types import Message

from server.presence import ClientGone, Presence


def test_a_wait_that_ends_as_the_client_leaves_counts_as_gone() -> None:
    # What the wait got (a slot, a prediction) is of no use once the client has gone.
    async def main() -> None:
        disconnect = asyncio.Event()

        async def receive() -> Message:
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async with Presence(receive) as presence:
            work: asyncio.Future[str] = asyncio.get_running_loop().create_future()

            def both() -> None:
                disconnect.set()
                work.set_result("a slot")

            asyncio.get_running_loop().call_soon(both)
            with pytest.raises(ClientGone) as gone:
                await presence.unless_gone(work, "while in line")
            assert gone.value.where == "while in line"

    asyncio.run(main())


def test_leaving_cancels_the_wait_and_nothing_runs_after() -> None:
    async def main() -> None:
        async def receive() -> Message:
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}

        async with Presence(receive) as presence:
            never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            with pytest.raises(ClientGone):
                await presence.unless_gone(never, "while waiting for the model")
            assert never.cancelled()
            with pytest.raises(ClientGone):
                presence.check("before encoding")

    asyncio.run(main())


def test_body_chunks_after_the_read_are_not_a_disconnect() -> None:
    async def main() -> None:
        messages = [{"type": "http.request", "body": b"late", "more_body": False}] * 3

        async def receive() -> Message:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        async with Presence(receive) as presence:
            assert await presence.unless_gone(asyncio.sleep(0.05, "done"), "x") == "done"
            assert not presence.gone and not messages

    asyncio.run(main())


def test_a_receive_that_fails_leaves_the_work_going() -> None:
    async def main() -> None:
        async def receive() -> Message:
            raise RuntimeError("the server's receive broke")

        async with Presence(receive) as presence:
            assert await presence.unless_gone(asyncio.sleep(0.05, "done"), "x") == "done"
            assert not presence.gone

    asyncio.run(main())


def test_without_receive_nothing_is_watched() -> None:
    async def main() -> None:
        async with Presence(None) as presence:
            assert await presence.unless_gone(asyncio.sleep(0, "done"), "x") == "done"
            assert not presence.gone

    asyncio.run(main())


def test_work_not_started_for_a_client_already_gone_is_closed() -> None:
    # The pipeline hands over `scheduler.predict(...)`, a coroutine: one never awaited
    # would be reported as forgotten (a RuntimeWarning in the server's log).
    async def main() -> None:
        async def receive() -> Message:
            return {"type": "http.disconnect"}

        async with Presence(receive) as presence:
            await asyncio.sleep(0.01)
            started = False

            async def work() -> None:
                nonlocal started
                started = True

            coroutine = work()
            with pytest.raises(ClientGone):
                await presence.unless_gone(coroutine, "while waiting for the model")
            assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED and not started

    asyncio.run(main())
