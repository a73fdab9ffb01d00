"""ratelimit_redis.py: what Redis holds (prefixed, bounded, expiring keys), atomicity
across clients, and what happens when Redis is down, hung, or back (the store side;
the failure policy is tested over HTTP in test_ratelimit_failure.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
import redis

from server.keyring import Keyring
from server.ratelimit import StoreUnavailable
from server.ratelimit_redis import RedisStore
from tests.fakes import ManualClock
from tests.redis_server import RedisServer, redis_instance

IDENTITY = Keyring.identity("sk-some-key")


def closed_port_url() -> str:
    with redis_instance() as server:
        url = server.url
    return url  # its server has stopped: nothing listens there now


def test_keys_are_prefixed_hashed_identities_that_expire(redis_url: str) -> None:
    async def scenario() -> None:
        store = RedisStore.from_url(redis_url)
        try:
            for _ in range(3):
                await store.take(IDENTITY, 2, 10, 60)  # the 3rd locks it out
        finally:
            await store.close()

    asyncio.run(scenario())
    with redis.Redis.from_url(redis_url) as client:
        hits, lock = f"matte:ratelimit:{{{IDENTITY}}}:hits", f"matte:ratelimit:{{{IDENTITY}}}:lock"
        assert sorted(client.keys("*")) == sorted([hits.encode(), lock.encode()])
        assert 9_000 < client.pttl(hits) <= 10_000
        assert 59_000 < client.pttl(lock) <= 60_000
        assert client.llen(hits) == 3


def test_the_hits_list_keeps_at_most_limit_plus_one(redis_url: str) -> None:
    # A zero lock-out never stops the counting: the list must still stay bounded.
    async def scenario() -> list[float | None]:
        store = RedisStore.from_url(redis_url)
        try:
            return [await store.take(IDENTITY, 5, 10, 0) for _ in range(40)]
        finally:
            await store.close()

    verdicts = asyncio.run(scenario())
    assert verdicts == [None] * 5 + [0.0] * 35
    with redis.Redis.from_url(redis_url) as client:
        assert client.llen(f"matte:ratelimit:{{{IDENTITY}}}:hits") == 6
        assert client.exists(f"matte:ratelimit:{{{IDENTITY}}}:lock") == 0


def test_separate_clients_in_separate_threads_share_one_exact_budget(redis_url: str) -> None:
    # Four event loops with four connection pools stand in for four replicas.
    admitted: list[int] = []
    lock = threading.Lock()

    def replica() -> None:
        async def hits() -> int:
            # 60 connections open at once on a loaded 2-core machine: this checks
            # atomicity, not the 0.5 s timeout, so it gets a generous one.
            store = RedisStore.from_url(redis_url, timeout_s=10)
            try:
                results = await asyncio.gather(
                    *(store.take("key:shared", 150, 10, 60) for _ in range(60))
                )
            finally:
                await store.close()
            return sum(result is None for result in results)

        count = asyncio.run(hits())
        with lock:
            admitted.append(count)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(admitted) == 4
    assert sum(admitted) == 150


def test_an_unreachable_redis_fails_fast_and_is_tried_again_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = closed_port_url()
    clock = ManualClock()

    async def scenario() -> list[str]:
        store = RedisStore.from_url(url, clock=clock)
        reasons = []
        try:
            for advance in (0.0, 0.5, 0.49, 0.02, 0.3):
                clock.advance(advance)
                started = time.monotonic()
                with pytest.raises(StoreUnavailable) as error:
                    await store.take(IDENTITY, 3, 10, 60)
                # A refused connection fails at once: redis-py's default would
                # retry it 10 times with back-off (about 2 s).
                assert time.monotonic() - started < 0.3
                reasons.append(str(error.value))
            assert store.down
        finally:
            await store.close()
        return reasons

    with caplog.at_level(logging.WARNING, logger="matte"):
        reasons = asyncio.run(scenario())
    tried, waited = "ConnectionError", "Redis was unreachable less than a second ago"
    assert [waited if reason == waited else reason.split(":")[0] for reason in reasons] == [
        tried,  # at 0
        waited,  # 0.5
        waited,  # 0.99
        tried,  # 1.01: a second after the last try
        waited,  # 1.31
    ]
    outage = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage) == 1  # one line for the outage, not one per try


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(server: RedisServer) -> None:
        store = RedisStore.from_url(server.url, retry_every_s=0.05)
        try:
            assert await store.take(IDENTITY, 3, 10, 60) is None
            server.kill()
            for _ in range(4):
                with pytest.raises(StoreUnavailable):
                    await store.take(IDENTITY, 3, 10, 60)
                await asyncio.sleep(0.06)
            server.start()
            # Redis forgot the script (its cache is memory) and the pooled
            # connection is dead: both must mend on their own.
            assert await store.take(IDENTITY, 3, 10, 60) is None
            assert await store.take(IDENTITY, 3, 10, 60) is None
            assert not store.down
        finally:
            await store.close()

    with redis_instance() as server, caplog.at_level(logging.WARNING, logger="matte"):
        asyncio.run(scenario(server))
    lines = [r.getMessage() for r in caplog.records if r.name == "matte"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("rate limit store: Redis is unreachable (ConnectionError: ")
    assert lines[1] == "rate limit store: Redis is reachable again; limits apply again"


def test_a_hung_redis_costs_a_request_the_socket_timeout_not_more() -> None:
    async def scenario(server: RedisServer) -> float:
        store = RedisStore.from_url(server.url)
        try:
            assert await store.take(IDENTITY, 3, 10, 60) is None  # connected
            server.pause()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"^TimeoutError: "):
                await store.take(IDENTITY, 3, 10, 60)
            return time.monotonic() - started
        finally:
            server.resume()
            await store.close()

    with redis_instance() as server:
        waited_s = asyncio.run(scenario(server))
    # TIMEOUT_S is 0.5: one try, no retries (redis-py's default would retry 10 times).
    assert 0.4 < waited_s < 1.5
