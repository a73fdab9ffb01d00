"""Per-key rate limiting: a sliding window of hits, then a lock-out.

More than `limit` hits within `window_s` locks the key out for `timeout_s`.
The store is an interface so several server processes can share one (a later
issue); the clock is injected so tests move time instead of sleeping.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import RateLimited

Clock = Callable[[], float]


class RateLimitStore(Protocol):
    def hit(self, key: str, now: float, window_s: float) -> int:
        """Record a hit at `now`; return the hits for `key` within the last `window_s`."""
        ...

    def locked_until(self, key: str) -> float:
        """When `key`'s lock-out ends (0 if it has none)."""
        ...

    def lock(self, key: str, until: float) -> None: ...


class MemoryStore:
    """One process's store. Idle keys are swept so random keys cannot grow it forever."""

    def __init__(self, sweep_every: int = 10_000) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._locks: dict[str, float] = {}
        self._sweep_every = sweep_every
        self._since_sweep = 0

    def hit(self, key: str, now: float, window_s: float) -> int:
        self._since_sweep += 1
        if self._since_sweep >= self._sweep_every:
            self._sweep(now, window_s)
        hits = self._hits.setdefault(key, deque())
        hits.append(now)
        start = now - window_s
        while hits and hits[0] <= start:
            hits.popleft()
        return len(hits)

    def locked_until(self, key: str) -> float:
        return self._locks.get(key, 0.0)

    def lock(self, key: str, until: float) -> None:
        self._locks[key] = until

    def __len__(self) -> int:
        return len(self._hits)

    def _sweep(self, now: float, window_s: float) -> None:
        self._since_sweep = 0
        self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - window_s}
        self._locks = {k: until for k, until in self._locks.items() if until > now}


@dataclass
class RateLimiter:
    store: RateLimitStore
    limit: int
    window_s: float
    timeout_s: float
    clock: Clock = time.monotonic

    def check(self, key: str) -> None:
        """Count one request for `key`; raise RateLimited if it is over the limit or locked out."""
        now = self.clock()
        until = self.store.locked_until(key)
        if until > now:
            raise self._error(until - now)
        if self.store.hit(key, now, self.window_s) > self.limit:
            self.store.lock(key, now + self.timeout_s)
            raise self._error(self.timeout_s)

    def _error(self, remaining_s: float) -> RateLimited:
        return RateLimited(
            self.limit, self.window_s, self.timeout_s, retry_after_s=max(1, math.ceil(remaining_s))
        )
