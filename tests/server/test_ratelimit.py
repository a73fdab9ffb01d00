from __future__ import annotations

import pytest

from server.errors import RateLimited
from server.ratelimit import MemoryStore, RateLimiter
from tests.fakes import ManualClock


def limiter(clock: ManualClock, store: MemoryStore | None = None) -> RateLimiter:
    return RateLimiter(
        store if store is not None else MemoryStore(),
        limit=3,
        window_s=10,
        timeout_s=60,
        clock=clock,
    )


def test_limit_then_lock_out_then_recovery() -> None:
    clock = ManualClock()
    rl = limiter(clock)
    for _ in range(3):
        rl.check("a")
    with pytest.raises(RateLimited) as refused:
        rl.check("a")
    assert refused.value.headers == {"retry-after": "60"}
    rl.check("b")  # keys are independent
    clock.advance(30)
    with pytest.raises(RateLimited) as still:
        rl.check("a")
    assert still.value.headers == {"retry-after": "30"}
    clock.advance(30)
    rl.check("a")


def test_window_slides() -> None:
    clock = ManualClock()
    rl = limiter(clock)
    rl.check("a")
    clock.advance(6)
    rl.check("a")
    rl.check("a")
    clock.advance(4.5)  # the first hit has left the window
    rl.check("a")
    with pytest.raises(RateLimited):
        rl.check("a")


def test_idle_keys_are_swept() -> None:
    clock = ManualClock()
    store = MemoryStore(sweep_every=100)
    rl = limiter(clock, store)
    for i in range(99):
        rl.check(f"key-{i}")
    clock.advance(11)
    rl.check("fresh")
    assert len(store) == 1
