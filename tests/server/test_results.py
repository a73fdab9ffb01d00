"""The result store: retention on an injected clock, the byte cap, unguessable
tokens, ids that only their owner can fetch."""

from __future__ import annotations

import re

import pytest

from server.results import ResultStore
from tests.fakes import ManualClock

TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


def store(clock: ManualClock, ttl_s: float = 60.0, max_bytes: int = 1000) -> ResultStore:
    return ResultStore(ttl_s, max_bytes, clock)


def test_a_result_is_kept_until_its_time_is_up() -> None:
    clock = ManualClock(1000.0)
    results = store(clock)
    kept = results.put(b"png", "image/png", "key:a", {"seed": 1})
    assert kept.expires_at == 1060.0
    assert kept.data == b"png" and kept.media_type == "image/png" and kept.owner == "key:a"
    assert kept.details == {"seed": 1}
    clock.advance(59.999)
    assert results.by_token(kept.token) is kept
    assert results.by_id(kept.id, "key:a") is kept
    clock.advance(0.001)  # exactly the retention time: gone
    assert results.by_token(kept.token) is None
    assert results.by_id(kept.id, "key:a") is None
    assert len(results) == 0 and results.bytes_held == 0


def test_an_expired_result_is_gone_by_id_too() -> None:
    clock = ManualClock()
    results = store(clock)
    kept = results.put(b"png", "image/png", "key:a", {})
    clock.advance(60)
    assert results.by_id(kept.id, "key:a") is None
    assert len(results) == 0 and results.bytes_held == 0


def test_details_are_copied() -> None:
    details = {"a": 1}
    kept = store(ManualClock()).put(b"x", "image/png", "key:a", details)
    details["a"] = 2
    assert kept.details == {"a": 1}


def test_tokens_are_unguessable_and_ids_numbers_below_2_to_the_53() -> None:
    results = store(ManualClock(), max_bytes=10_000)
    kept = [results.put(b"x", "image/png", "key:a", {}) for _ in range(200)]
    assert all(TOKEN.fullmatch(item.token) for item in kept)
    assert len({item.token for item in kept}) == 200
    assert len({item.id for item in kept}) == 200
    assert all(isinstance(item.id, int) and 1 <= item.id < 2**53 for item in kept)
    # Random, not a counter: 200 in a row are not consecutive.
    ids = sorted(item.id for item in kept)
    assert ids[-1] - ids[0] > 10_000


def test_only_the_owner_fetches_by_id() -> None:
    results = store(ManualClock())
    kept = results.put(b"x", "image/png", "key:a", {})
    assert results.by_id(kept.id, "key:b") is None
    assert results.by_id(kept.id, "key:a") is kept
    assert results.by_id(kept.id + 1, "key:a") is None


def test_the_oldest_results_make_room() -> None:
    clock = ManualClock()
    results = store(clock, max_bytes=10)
    first = results.put(b"aaaa", "image/png", "o", {})
    clock.advance(1)
    second = results.put(b"bbbb", "image/png", "o", {})
    assert results.bytes_held == 8
    third = results.put(b"cc", "image/png", "o", {})  # exactly 10: all fit
    assert results.bytes_held == 10 and len(results) == 3
    fourth = results.put(b"d", "image/png", "o", {})  # one over: the oldest goes
    assert results.by_token(first.token) is None and results.by_id(first.id, "o") is None
    assert [results.by_token(item.token) for item in (second, third, fourth)] == [
        second,
        third,
        fourth,
    ]
    assert results.bytes_held == 7
    fifth = results.put(b"eeeeeeeeee", "image/png", "o", {})  # the whole cap
    assert len(results) == 1 and results.by_token(fifth.token) is fifth


def test_a_result_over_the_whole_cap_is_refused() -> None:
    results = store(ManualClock(), max_bytes=10)
    with pytest.raises(ValueError, match="exceeds"):
        results.put(b"x" * 11, "image/png", "o", {})
    assert len(results) == 0


def test_purge_drops_only_the_expired() -> None:
    clock = ManualClock()
    results = store(clock, ttl_s=10)
    old = results.put(b"1", "image/png", "o", {})
    clock.advance(5)
    young = results.put(b"2", "image/png", "o", {})
    clock.advance(5)
    assert results.purge() == 1
    assert len(results) == 1 and results.bytes_held == 1
    assert results.by_token(old.token) is None and results.by_token(young.token) is young
    assert results.purge() == 0
    clock.advance(5)
    assert results.purge() == 1 and len(results) == 0


def test_put_purges_the_expired_first() -> None:
    clock = ManualClock()
    results = store(clock, ttl_s=10, max_bytes=4)
    results.put(b"1111", "image/png", "o", {})
    clock.advance(10)
    results.put(b"22", "image/png", "o", {})
    assert len(results) == 1 and results.bytes_held == 2


@pytest.mark.parametrize(("ttl_s", "max_bytes"), [(0, 10), (-1, 10), (10, 0)])
def test_bounds_must_be_positive(ttl_s: float, max_bytes: int) -> None:
    with pytest.raises(ValueError):
        ResultStore(ttl_s, max_bytes)
    assert ResultStore(0.001, 1).max_bytes == 1
