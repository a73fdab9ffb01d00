"""Per-key rate limiting: a sliding window of hits, then a lock-out.

More than `limit` hits within `window_s` locks the key out for `timeout_s`.
The store does the whole check as one atomic step (`take`), so several server
processes can share one (server/ratelimit_redis.py) without over-admitting;
the in-process store's clock is injected so tests move time instead of sleeping.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import RateLimited
from .key_limits import Rate

Clock = Callable[[], float]


class StoreUnavailable(Exception):
    """The store could not answer in time; the caller applies the failure policy
    (MATTE_RATE_LIMIT_FAILURE). Its message is for the log, never for clients."""


class RateLimitStore(Protocol):
    async def take(self, key: str, limit: int, window_s: float, timeout_s: float) -> float | None:
        """Count one hit for `key`, unless it is locked out, in one atomic step.

        None: the hit is within `limit` hits in the last `window_s`. Otherwise the
        seconds of lock-out left: a hit over the limit starts a lock-out of
        `timeout_s` (and is the last one counted until it ends). Raises
        StoreUnavailable when the store cannot be reached."""
        ...

    async def usage(self, key: str, window_s: float) -> tuple[int, float]:
        """The hits counted for `key` in the last `window_s`, and the seconds until
        the oldest of them leaves the window (0 with none). Reads only; raises
        StoreUnavailable when the store cannot be reached."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """One process's store. Idle keys are swept so random keys cannot grow it forever.

    Used from the event loop only: `take` never awaits, so it is atomic there."""

    def __init__(self, clock: Clock = time.monotonic, sweep_every: int = 10_000) -> None:
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._locks: dict[str, float] = {}
        self._sweep_every = sweep_every
        self._since_sweep = 0
        # Keys may have windows of their own (the keys file): a sweep keeps
        # whatever the longest of them still covers.
        self._longest_window_s = 0.0

    async def take(self, key: str, limit: int, window_s: float, timeout_s: float) -> float | None:
        now = self.clock()
        until = self._locks.get(key, 0.0)
        if until > now:
            return until - now
        self._longest_window_s = max(self._longest_window_s, window_s)
        self._since_sweep += 1
        if self._since_sweep >= self._sweep_every:
            self._sweep(now)
        hits = self._hits.setdefault(key, deque())
        hits.append(now)
        start = now - window_s
        while hits and hits[0] <= start:
            hits.popleft()
        # Past limit + 1 the oldest hits cannot change a verdict: the newest
        # limit + 1 are all inside the window whenever the oldest is.
        while len(hits) > limit + 1:
            hits.popleft()
        if len(hits) > limit:
            self._locks[key] = now + timeout_s
            return timeout_s
        return None

    async def usage(self, key: str, window_s: float) -> tuple[int, float]:
        now = self.clock()
        start = now - window_s
        inside = [hit for hit in self._hits.get(key, ()) if hit > start]
        return len(inside), (inside[0] - start if inside else 0.0)

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._hits)

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        start = now - self._longest_window_s
        self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > start}
        self._locks = {k: until for k, until in self._locks.items() if until > now}


@dataclass(frozen=True)
class Budget:
    """Where a caller stands in its window, for APIs whose replies say so (remove.bg's
    X-RateLimit-* headers): its limit, the requests it has left, and the seconds until
    `remaining` next grows (the oldest request counted leaves the window; 0 with none)."""

    limit: int
    remaining: int
    reset_s: float


@dataclass
class RateLimiter:
    store: RateLimitStore
    limit: int
    window_s: float
    timeout_s: float

    async def check(self, key: str, rate: Rate | None = None) -> None:
        """Count one request for `key` against `rate` (None: the default); raise
        RateLimited if it is over the limit or locked out, StoreUnavailable if the
        store cannot say."""
        limit, window_s = (rate.requests, rate.window_s) if rate else (self.limit, self.window_s)
        remaining_s = await self.store.take(key, limit, window_s, self.timeout_s)
        if remaining_s is not None:
            raise RateLimited(
                limit, window_s, self.timeout_s, retry_after_s=max(1, math.ceil(remaining_s))
            )

    async def budget(self, key: str, rate: Rate | None = None) -> Budget:
        """`key`'s standing against `rate` (None: the default), without counting a hit;
        StoreUnavailable if the store cannot say."""
        limit, window_s = (rate.requests, rate.window_s) if rate else (self.limit, self.window_s)
        hits, reset_s = await self.store.usage(key, window_s)
        return Budget(limit, max(0, limit - hits), reset_s)
