"""Measuring on a shared machine: wait for the neighbours to go quiet, retry when they did not.

Other sessions run bursts of work on the same two cores (tens of seconds on,
tens off). A run that overlaps a burst measures the neighbours as much as the
server, so each measurement waits for a quiet moment first, and is repeated
(up to `attempts` times) when its own `other` load says a burst hit it; the
quietest attempt is kept. The tables show each kept run's `other`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from load import busy_cores

T = TypeVar("T")


@dataclass(frozen=True)
class Quiet:
    threshold: float = 0.2  # cores used by others that still count as quiet
    max_wait_s: float = 90.0  # per attempt; then measure anyway
    attempts: int = 3
    settle_s: float = 3.0  # how long it must stay quiet before a run starts

    def wait(self) -> float:
        """Block until others have used <= threshold cores for settle_s; the last reading."""
        deadline = time.monotonic() + self.max_wait_s
        quiet_since: float | None = None
        load = 0.0
        while time.monotonic() < deadline:
            # Nothing of ours runs now (servers idle, client not started): busy is others'.
            load = busy_cores(1.0)
            now = time.monotonic()
            if load > self.threshold:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now - 1.0
            if quiet_since is not None and now - quiet_since >= self.settle_s:
                break
        return load

    def measure(self, run: Callable[[], T], other_of: Callable[[T], float],
                log: Callable[[str], None]) -> T:
        """The quietest of up to `attempts` runs of `run`, each after waiting for quiet."""
        kept: T | None = None
        for attempt in range(1, self.attempts + 1):
            if self.max_wait_s > 0:
                self.wait()
            result = run()
            if kept is None or other_of(result) < other_of(kept):
                kept = result
            if other_of(result) <= self.threshold:
                break
            if attempt < self.attempts:
                log(f"  others used {other_of(result):.2f} cores meanwhile: measuring again")
        assert kept is not None
        return kept
