"""ratelimit.py: a sliding window of hits per key, then a lock-out, as one atomic `take`;
the store contract holds for the in-process store and for Redis (ratelimit_redis.py)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

from server.errors import RateLimited
from server.key_limits import Rate
from server.ratelimit import Budget, MemoryStore, RateLimiter, RateLimitStore
from server.ratelimit_redis import RedisStore
from tests.fakes import ManualClock

T = TypeVar("T")

MESSAGE = (
    "You have exceeded the rate limit of 3 requests within a 10 second period, "
    "and have been timed out for 60 seconds."
)


def limiter(
    clock: ManualClock, store: MemoryStore | None = None, timeout_s: float = 60
) -> RateLimiter:
    return RateLimiter(
        store if store is not None else MemoryStore(clock),
        limit=3,
        window_s=10,
        timeout_s=timeout_s,
    )


def refused(rl: RateLimiter, key: str = "a", rate: Rate | None = None) -> RateLimited:
    with pytest.raises(RateLimited) as error:
        asyncio.run(rl.check(key, rate))
    return error.value


def allowed(rl: RateLimiter, key: str = "a", rate: Rate | None = None) -> bool:
    try:
        asyncio.run(rl.check(key, rate))
    except RateLimited:
        return False
    return True


def take(store: MemoryStore, key: str, limit: int = 3, window_s: float = 10) -> float | None:
    return asyncio.run(store.take(key, limit, window_s, 60))


# --- the limiter (in-process store, manual clock: exact times) -----------------------------


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
        assert allowed(rl, "a")
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
        assert allowed(rl)
    error = refused(rl)
    assert error.headers == {"retry-after": "1"}
    assert "timed out for 0 seconds" in error.messages[0]


def test_a_hit_exactly_one_window_old_has_left_the_window() -> None:
    clock = ManualClock()
    rl = limiter(clock)
    for _ in range(3):
        assert allowed(rl)
    clock.advance(10)
    assert allowed(rl)


def test_a_hit_just_inside_the_window_still_counts() -> None:
    clock = ManualClock()
    rl = limiter(clock)
    for _ in range(3):
        assert allowed(rl)
    clock.advance(9.999)
    assert refused(rl).headers == {"retry-after": "60"}


def test_the_window_slides() -> None:
    clock = ManualClock()
    rl = limiter(clock)
    assert allowed(rl)
    clock.advance(6)
    assert allowed(rl) and allowed(rl)
    clock.advance(4.5)  # the first hit has left the window, the other two have not
    assert allowed(rl)
    refused(rl)


def test_a_rate_of_its_own_replaces_the_default_budget() -> None:
    clock = ManualClock()
    rl = limiter(clock)
    own = Rate(5, 2.0)
    assert [allowed(rl, "a", own) for _ in range(6)] == [True] * 5 + [False]
    error = refused(rl, "a", own)
    assert error.messages == (
        "You have exceeded the rate limit of 5 requests within a 2 second period, "
        "and have been timed out for 60 seconds.",
    )
    # Its window is its own too: 2 s, not the default's 10.
    assert [allowed(rl, "b", own) for _ in range(5)] == [True] * 5
    clock.advance(2)
    assert allowed(rl, "b", own)
    # A key without one keeps the default.
    assert [allowed(rl, "c") for _ in range(4)] == [True, True, True, False]


# --- the in-process store: bounds and sweeping ----------------------------------------------


def test_a_key_keeps_at_most_limit_plus_one_hits() -> None:
    # A zero lock-out never stops the counting; the newest limit + 1 hits decide
    # as well as all of them would, so no more are kept.
    store = MemoryStore(ManualClock())

    async def hammer() -> list[float | None]:
        return [await store.take("a", 5, 10, 0) for _ in range(40)]

    assert asyncio.run(hammer()) == [None] * 5 + [0] * 35
    assert len(store._hits["a"]) == 6


def test_take_counts_the_hits_within_the_last_window() -> None:
    clock = ManualClock(0.0)
    store = MemoryStore(clock)
    verdicts = []
    for now in (0.0, 5.0, 10.0, 14.9, 15.0):
        clock.now = now
        verdicts.append(take(store, "a", limit=2))
    # At 10 the hit at 0 is exactly a window old: out, so 2 hits; at 14.9 three
    # (5, 10, 14.9): over the limit, locked out for 60 s.
    assert verdicts == [None, None, None, 60, pytest.approx(59.9)]
    assert take(store, "b") is None


def test_the_store_sweeps_every_nth_hit() -> None:
    # Each hit is on a new key, a whole window after the last, so every earlier key is
    # idle: the key count shows exactly when a sweep ran (before the hit is added).
    clock = ManualClock(0.0)
    store = MemoryStore(clock, sweep_every=3)
    sizes = []
    for i in range(9):
        clock.now = 100.0 * i
        take(store, f"k{i}")
        sizes.append(len(store))
    assert sizes == [1, 2, 1, 2, 3, 1, 2, 3, 1]


def test_the_default_sweep_runs_at_the_10000th_hit() -> None:
    clock = ManualClock(0.0)
    store = MemoryStore(clock)

    async def fill() -> None:
        for i in range(9_998):
            await store.take(f"k{i}", 3, 10, 60)

    asyncio.run(fill())
    clock.now = 11.0
    take(store, "late")  # the 9,999th: no sweep yet
    assert len(store) == 9_999
    take(store, "later")  # the 10,000th: the idle keys go
    assert len(store) == 2


def test_the_sweep_keeps_live_keys_and_their_hits() -> None:
    clock = ManualClock()
    store = MemoryStore(clock, sweep_every=10)
    rl = limiter(clock, store)
    for _ in range(3):
        assert allowed(rl, "busy")  # at the limit
    assert allowed(rl, "stale")
    clock.advance(9.5)  # "stale" and "busy" are 9.5 s old: both still live
    for i in range(6):
        assert allowed(rl, f"other-{i}")  # the 10th hit sweeps
    assert len(store) == 8
    refused(rl, "busy")  # its three hits survived the sweep


def test_the_sweep_drops_keys_whose_last_hit_is_a_window_old() -> None:
    clock = ManualClock(0.0)
    store = MemoryStore(clock, sweep_every=4)
    take(store, "old")
    take(store, "live")  # as old as "old", but the key's last hit counts
    clock.now = 5.0
    take(store, "live")
    clock.now = 10.0
    take(store, "new")  # sweeps at 10: "old" is exactly a window old
    assert len(store) == 2
    clock.now = 10.5
    assert take(store, "live", limit=1) == 60  # its hit at 5 was kept: two in the window


def test_the_sweep_keeps_what_the_longest_window_still_covers() -> None:
    # A key with a window of its own (the keys file) outlives the default window.
    clock = ManualClock(0.0)
    store = MemoryStore(clock, sweep_every=3)
    take(store, "own", limit=1, window_s=60)
    clock.now = 30.0
    take(store, "x")
    take(store, "y")  # sweeps at 30: "own" is inside its 60 s window
    assert take(store, "own", limit=1, window_s=60) == 60


def test_a_lock_out_survives_a_sweep() -> None:
    clock = ManualClock()
    store = MemoryStore(clock, sweep_every=5)
    rl = limiter(clock, store)
    for _ in range(4):
        allowed(rl, "a")  # locked out until +60
    clock.advance(30)  # its hits are idle now, its lock-out is not
    assert allowed(rl, "b")  # the 5th hit sweeps
    assert len(store) == 1
    assert refused(rl, "a").headers == {"retry-after": "30"}


def test_the_sweep_drops_ended_lock_outs_and_keeps_running_ones() -> None:
    clock = ManualClock(0.0)
    store = MemoryStore(clock, sweep_every=4)
    for key, timeout_s in (("ends-at-100", 100.0), ("ends-at-100.5", 100.5)):
        asyncio.run(store.take(key, 0, 10, timeout_s))  # limit 0: locked at once
    clock.now = 100.0
    take(store, "x")
    take(store, "y")  # the 4th hit sweeps at 100
    assert take(store, "ends-at-100.5") == pytest.approx(0.5)
    assert take(store, "ends-at-100") is None


# --- the contract, on both stores ----------------------------------------------------------


@dataclass
class StoreCase:
    """One store under the contract: how to build it (inside the test's event loop)
    and how to let time pass for it (a manual clock, or Redis's real one)."""

    make: Callable[[], RateLimitStore]
    wait: Callable[[float], Awaitable[None]]

    def run(self, scenario: Callable[[RateLimitStore], Awaitable[T]]) -> T:
        async def main() -> T:
            store = self.make()
            try:
                return await scenario(store)
            finally:
                await store.close()

        return asyncio.run(main())


@pytest.fixture(params=["memory", "redis"])
def case(request: pytest.FixtureRequest) -> Iterator[StoreCase]:
    if request.param == "memory":
        clock = ManualClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        yield StoreCase(lambda: MemoryStore(clock), advance)
    else:
        url = request.getfixturevalue("redis_url")
        # The contract, not the 0.5 s timeout (a loaded CI machine can miss that).
        yield StoreCase(lambda: RedisStore.from_url(url, timeout_s=10), asyncio.sleep)


# Real seconds for Redis: short, with margins for a busy 2-core machine.
WINDOW_S = 0.6
TIMEOUT_S = 1.5


def test_contract_the_limit_then_a_lock_out_of_timeout(case: StoreCase) -> None:
    async def scenario(store: RateLimitStore) -> list[float | None]:
        return [await store.take("key:a", 3, 10, 60) for _ in range(5)]

    verdicts = case.run(scenario)
    assert verdicts[:3] == [None, None, None]
    assert verdicts[3] == 60
    # Locked: the rest of the lock-out, a little under 60 s.
    assert verdicts[4] is not None and 59 < verdicts[4] <= 60


def test_contract_keys_are_independent(case: StoreCase) -> None:
    async def scenario(store: RateLimitStore) -> list[float | None]:
        for _ in range(4):
            await store.take("key:a", 3, 10, 60)
        return [await store.take(key, 3, 10, 60) for key in ("key:b", "ip:203.0.113.7")]

    assert case.run(scenario) == [None, None]


def test_contract_the_window_slides(case: StoreCase) -> None:
    async def scenario(store: RateLimitStore) -> list[float | None]:
        verdicts = [await store.take("key:a", 2, WINDOW_S, TIMEOUT_S)]
        await case.wait(WINDOW_S / 2)
        verdicts.append(await store.take("key:a", 2, WINDOW_S, TIMEOUT_S))
        await case.wait(WINDOW_S / 2 + 0.1)  # the first hit has left, the second has not
        verdicts.append(await store.take("key:a", 2, WINDOW_S, TIMEOUT_S))
        verdicts.append(await store.take("key:a", 2, WINDOW_S, TIMEOUT_S))
        return verdicts

    verdicts = case.run(scenario)
    assert verdicts[:3] == [None, None, None]
    assert verdicts[3] == TIMEOUT_S


def test_contract_the_lock_out_counts_down_then_ends(case: StoreCase) -> None:
    async def scenario(store: RateLimitStore) -> list[float | None]:
        for _ in range(2):
            await store.take("key:a", 1, WINDOW_S, TIMEOUT_S)  # the 2nd locks
        await case.wait(0.5)
        left = await store.take("key:a", 1, WINDOW_S, TIMEOUT_S)
        await case.wait(TIMEOUT_S - 0.5 + 0.1)  # past the lock-out and the window
        return [left, await store.take("key:a", 1, WINDOW_S, TIMEOUT_S)]

    left, after = case.run(scenario)
    assert left is not None and TIMEOUT_S - 0.5 - 0.3 < left <= TIMEOUT_S - 0.5
    assert after is None


def test_contract_a_zero_lock_out_still_refuses_the_hit_over_the_limit(case: StoreCase) -> None:
    async def scenario(store: RateLimitStore) -> list[float | None]:
        return [await store.take("key:a", 2, 10, 0) for _ in range(4)]

    # 0 is a refusal (None admits): the limiter turns it into Retry-After 1.
    assert case.run(scenario) == [None, None, 0, 0]


def test_contract_concurrent_callers_are_admitted_exactly_up_to_the_limit(
    case: StoreCase,
) -> None:
    async def caller(store: RateLimitStore) -> int:
        admitted = 0
        for _ in range(20):
            admitted += await store.take("key:shared", 150, 10, 60) is None
        return admitted

    async def scenario(store: RateLimitStore) -> list[int]:
        return await asyncio.gather(*(caller(store) for _ in range(20)))

    counts = case.run(scenario)
    assert sum(counts) == 150


def test_the_limiter_over_redis_answers_429_with_retry_after(redis_url: str) -> None:
    async def scenario() -> RateLimited:
        store = RedisStore.from_url(redis_url)
        rl = RateLimiter(store, limit=3, window_s=10, timeout_s=60)
        try:
            for _ in range(3):
                await rl.check("key:a")
            with pytest.raises(RateLimited) as error:
                await rl.check("key:a")
            return error.value
        finally:
            await store.close()

    error = asyncio.run(scenario())
    assert error.messages == (MESSAGE,)
    assert error.headers == {"retry-after": "60"}
    assert math.isclose(error.retry_after_s, 60)


def test_contract_usage_counts_the_window_without_a_hit(case: StoreCase) -> None:
    async def scenario(store: RateLimitStore) -> list[tuple[int, float]]:
        usages = [await store.usage("key:a", WINDOW_S)]
        await store.take("key:a", 5, WINDOW_S, TIMEOUT_S)
        await case.wait(WINDOW_S / 2)
        await store.take("key:a", 5, WINDOW_S, TIMEOUT_S)
        usages.append(await store.usage("key:a", WINDOW_S))
        usages.append(await store.usage("key:a", WINDOW_S))  # reading counts nothing
        await case.wait(WINDOW_S / 2 + 0.1)  # the first hit has left, the second has not
        usages.append(await store.usage("key:a", WINDOW_S))
        usages.append(await store.usage("key:b", WINDOW_S))
        return usages

    empty, two, again, one, other = case.run(scenario)
    assert empty == (0, 0) and other == (0, 0)
    assert two[0] == again[0] == 2
    # Until the oldest hit leaves: about half the window after the second hit.
    assert WINDOW_S / 2 - 0.2 < two[1] <= WINDOW_S / 2 + 1e-6
    assert one[0] == 1 and 0 < one[1] < WINDOW_S / 2


def test_the_budget_is_the_limit_less_the_hits(clock: ManualClock) -> None:
    rl = limiter(clock)
    assert asyncio.run(rl.budget("a")) == Budget(3, 3, 0)
    allowed(rl)
    clock.advance(4)
    allowed(rl)
    assert asyncio.run(rl.budget("a")) == Budget(3, 1, 6)
    assert asyncio.run(rl.budget("a", Rate(10, 60))) == Budget(10, 8, 56)
    for _ in range(2):
        allowed(rl)  # the 4th is refused and locks the key out
    assert asyncio.run(rl.budget("a")).remaining == 0
