"""Webhook delivery: a JSON POST in the background, retried with exponential back-off.

The response to the client never waits for a webhook. Each delivery is one
task, tracked so that shutdown cancels what is left, and bounded in count
(`attempts`) and so in time: with the defaults, at most 5 attempts of at most
the guard's timeout each, 1 + 2 + 4 + 8 = 15 s apart in all. Every attempt goes
through the outbound guard, so each one re-resolves and re-checks the address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .outbound import Outbound, OutboundFailed, OutboundRefused

log = logging.getLogger("matte.webhooks")

ATTEMPTS = 5
FIRST_DELAY_S = 1.0
BACKOFF = 2.0
# Deliveries waiting at once; past this a new one is dropped (and logged) rather
# than letting a slow receiver make the server hold every payload.
MAX_PENDING = 256


class Webhooks:
    def __init__(
        self,
        outbound: Outbound,
        *,
        attempts: int = ATTEMPTS,
        first_delay_s: float = FIRST_DELAY_S,
        backoff: float = BACKOFF,
        max_pending: int = MAX_PENDING,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if attempts < 1 or first_delay_s < 0 or backoff < 1 or max_pending < 1:
            raise ValueError("webhooks need at least one attempt and non-shrinking delays")
        self.outbound = outbound
        self.attempts = attempts
        self.first_delay_s = first_delay_s
        self.backoff = backoff
        self.max_pending = max_pending
        self._sleep = sleep
        self._tasks: set[asyncio.Task[bool]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def delays(self) -> list[float]:
        """The waits between attempts: first_delay_s, then each `backoff` times longer."""
        return [self.first_delay_s * self.backoff**n for n in range(self.attempts - 1)]

    def send(self, url: str, body: Mapping[str, Any]) -> asyncio.Task[bool] | None:
        """Start delivering `body` to `url`; None when it was dropped (full or shut down)."""
        if self._closed:
            return None
        if len(self._tasks) >= self.max_pending:
            log.warning(
                "webhook to %s dropped: %d deliveries already pending", _host(url), self.pending
            )
            return None
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        task = asyncio.get_running_loop().create_task(self._deliver(url, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel every pending delivery and wait until they have stopped."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver(self, url: str, payload: bytes) -> bool:
        delays = self.delays()
        for attempt in range(self.attempts):
            try:
                reply = await self.outbound.post_json(url, payload)
            except OutboundRefused as refused:
                # Policy does not change between attempts: retrying cannot help.
                log.warning("webhook to %s refused: %s", _host(url), refused.reason)
                return False
            except OutboundFailed as failed:
                outcome = failed.reason
            else:
                if reply.ok:
                    return True
                outcome = f"answered HTTP {reply.status}"
            if attempt < len(delays):
                log.info("webhook to %s attempt %d %s; retrying", _host(url), attempt + 1, outcome)
                await self._sleep(delays[attempt])
        log.warning(
            "webhook to %s given up after %d attempts: %s", _host(url), self.attempts, outcome
        )
        return False


def _host(url: str) -> str:
    # Only the host goes to the log: paths and queries often carry tokens.
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
