"""ratelimit.py: a sliding window of hits per key, then a lock-out; the store sweeps idle keys."""

from __future__ import annotations

import pytest

from server.errors import RateLimited
from server.ratelimit import MemoryStore, RateLimiter
from tests.fakes import ManualClock

MESSAGE = (
    "You have exceeded the rate limit of 3 requests within a 10 second period, "
    "and have been timed out for 60 seconds."
)


def limiter(
    clock: ManualClock, store: MemoryStore | None = None, timeout_s: float = 60
) -> RateLimiter:
    return RateLimiter(
        store if store is not None else MemoryStore(),
        limit=3,
        window_s=10,
        timeout_s=timeout_s,
        clock=clock,
    )


def refused(rl: RateLimiter, key: str = "a") -> RateLimited:
    with pytest.raises(RateLimited) as error:
        rl.check(key)
    return error.value


def allowed(rl: RateLimiter, key: str = "a") -> bool:
    try:
        rl.check(key)
    except RateLimited:
        return False
    return True


# --- the limiter -----------------------------------------------------------------------------


def test_exactly_the_limit_passes_and_one_more_is_refused_for_the_lock_out() -> None:
    rl = limiter(ManualClock())
    assert [allowed(rl) for _ in range(3)] == [True, True, True]
    error = refused(rl)
    assert error.status == 429
    assert error.messages == (MESSAGE,)
    assert error.headers == {"retry-after": "60"}
    assert error.retry_after_s == 60


def test_keys_are_limited_independently() -> None:
    rl = limiter(ManualClock())
    for _ in range(3):
        rl.check("a")
    refused(rl, "a")
    assert [allowed(rl, "b") for _ in range(3)] == [True, True, True]


def test_the_lock_out_lasts_exactly_the_timeout() -> None:
    clock = ManualClock()
    rl = limiter(clock)
    for _ in range(4):
        allowed(rl)
    # Long past the window (10 s), still inside the lock-out (60 s).
    clock.advance(59.9)
    assert refused(rl).headers == {"retry-after": "1"}
    clock.advance(0.1)  # the lock-out's last instant has passed
    assert [allowed(rl) for _ in range(3)] == [True, True, True]
    assert refused(rl).headers == {"retry-after": "60"}


@pytest.mark.parametrize(
    ("waited_s", "retry_after"),
    [(0.0, "60"), (0.3, "60"), (0.7, "60"), (30.0, "30"), (30.5, "30"), (59.5, "1"), (59.99, "1")],
)
def test_retry_after_is_the_rest_of_the_lock_out_rounded_up(
    waited_s: float, retry_after: str
) -> None:
    clock = ManualClock()
    rl = limiter(clock)
    for _ in range(4):
        allowed(rl)
    clock.advance(waited_s)
    error = refused(rl)
    assert error.headers == {"retry-after": retry_after}
    assert error.messages == (MESSAGE,)


def test_a_zero_lock_out_still_says_retry_after_1() -> None:
    # ceil(0) is 0; a client told 0 would retry at once.
    rl = limiter(ManualClock(), timeout_s=0)
    for _ in range(3):
        rl.check("a")
    error = refused(rl)
    assert error.headers == {"retry-after": "1"}
    assert "timed out for 0 seconds" in error.messages[0]


def test_a_hit_exactly_one_window_old_has_left_the_window() -> None:
    clock = ManualClock()
    rl = limiter(clock)
    for _ in range(3):
        rl.check("a")
    clock.advance(10)
    assert allowed(rl)


def test_a_hit_just_inside_the_window_still_counts() -> None:
    clock = ManualClock()
    rl = limiter(clock)
    for _ in range(3):
        rl.check("a")
    clock.advance(9.999)
    assert refused(rl).headers == {"retry-after": "60"}


def test_the_window_slides() -> None:
    clock = ManualClock()
    rl = limiter(clock)
    rl.check("a")
    clock.advance(6)
    rl.check("a")
    rl.check("a")
    clock.advance(4.5)  # the first hit has left the window, the other two have not
    rl.check("a")
    refused(rl)


# --- the store -------------------------------------------------------------------------------


def test_hit_returns_the_hits_within_the_last_window() -> None:
    store = MemoryStore()
    counts = [store.hit("a", now, 10) for now in (0.0, 5.0, 10.0, 14.9, 25.0)]
    # At 10 the hit at 0 is exactly a window old: out. At 25 only the new hit is in.
    assert counts == [1, 2, 2, 3, 1]
    assert store.hit("b", 25.0, 10) == 1


def test_locks_are_kept_per_key() -> None:
    store = MemoryStore()
    assert store.locked_until("a") == 0.0
    store.lock("a", 1060.5)
    assert store.locked_until("a") == 1060.5
    assert store.locked_until("b") == 0.0


def test_the_store_sweeps_every_nth_hit() -> None:
    # Each hit is on a new key, a whole window after the last, so every earlier key is
    # idle: the key count shows exactly when a sweep ran (before the hit is added).
    store = MemoryStore(sweep_every=3)
    sizes = []
    for i in range(9):
        store.hit(f"k{i}", 100.0 * i, 10)
        sizes.append(len(store))
    assert sizes == [1, 2, 1, 2, 3, 1, 2, 3, 1]


def test_the_default_sweep_runs_at_the_10000th_hit() -> None:
    store = MemoryStore()
    for i in range(9_998):
        store.hit(f"k{i}", 0.0, 10)
    store.hit("late", 11.0, 10)  # the 9,999th: no sweep yet
    assert len(store) == 9_999
    store.hit("later", 11.0, 10)  # the 10,000th: the idle keys go
    assert len(store) == 2


def test_the_sweep_keeps_live_keys_and_their_hits() -> None:
    clock = ManualClock()
    store = MemoryStore(sweep_every=10)
    rl = limiter(clock, store)
    for _ in range(3):
        rl.check("busy")  # at the limit
    rl.check("stale")
    clock.advance(9.5)  # "stale" and "busy" are 9.5 s old: both still live
    for i in range(6):
        rl.check(f"other-{i}")  # the 10th hit sweeps
    assert len(store) == 8
    refused(rl, "busy")  # its three hits survived the sweep


def test_the_sweep_drops_keys_whose_last_hit_is_a_window_old() -> None:
    store = MemoryStore(sweep_every=4)
    store.hit("old", 0.0, 10)
    store.hit("live", 0.0, 10)  # as old as "old", but the key's last hit counts
    store.hit("live", 5.0, 10)
    store.hit("new", 10.0, 10)  # sweeps at 10: "old" is exactly a window old
    assert len(store) == 2
    assert store.hit("live", 10.5, 10) == 2


def test_the_sweep_keeps_running_lock_outs_and_drops_ended_ones() -> None:
    store = MemoryStore(sweep_every=2)
    store.lock("ended", 50.0)
    store.lock("ends-now", 100.0)
    store.lock("running", 100.5)
    store.hit("x", 0.0, 10)
    store.hit("y", 100.0, 10)  # sweeps at 100
    assert store.locked_until("running") == 100.5
    assert store.locked_until("ends-now") == 0.0
    assert store.locked_until("ended") == 0.0


def test_a_lock_out_survives_a_sweep() -> None:
    clock = ManualClock()
    store = MemoryStore(sweep_every=5)
    rl = limiter(clock, store)
    for _ in range(4):
        allowed(rl, "a")  # locked out until +60
    clock.advance(30)  # its hits are idle now, its lock-out is not
    allowed(rl, "b")  # the 5th hit sweeps
    assert len(store) == 1
    assert refused(rl, "a").headers == {"retry-after": "30"}
