"""The result store's policy over a real (SQLite) storage: retention on an injected
wall clock, the byte cap handed down, unguessable tokens, ids only their owner can
fetch. The storage's own semantics (eviction order, expiry boundaries, both
backends) are tested in tests/server/storage/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.results import ResultStore
from server.storage.sqlite import SqliteStorage
from tests.fakes import ManualClock

TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SqliteStorage]:
    opened = SqliteStorage(tmp_path)
    yield opened
    opened.close()


def store(
    storage: SqliteStorage, clock: ManualClock, ttl_s: float = 60.0, max_bytes: int = 1000
) -> ResultStore:
    return ResultStore(storage, ttl_s, max_bytes, clock)


def test_a_result_is_kept_until_its_time_is_up(storage: SqliteStorage) -> None:
    clock = ManualClock(1000.0)
    results = store(storage, clock)
    kept = results.put(b"png", "image/png", "key:a", {"seed": 1})
    assert kept.expires_at == 1060.0
    assert kept.data == b"png" and kept.media_type == "image/png" and kept.owner == "key:a"
    assert kept.details == {"seed": 1}
    clock.advance(59.999)
    assert results.by_token(kept.token) == kept
    assert results.by_id(kept.id, "key:a") == kept
    clock.advance(0.001)  # exactly the retention time: gone
    assert results.by_token(kept.token) is None
    assert results.by_id(kept.id, "key:a") is None


def test_results_outlive_the_store_object(storage: SqliteStorage, tmp_path: Path) -> None:
    # Durable: a restart (a new storage on the same folder) still finds them.
    clock = ManualClock()
    kept = store(storage, clock).put(b"png", "image/png", "key:a", {"n": 1})
    storage.close()
    reopened = SqliteStorage(tmp_path)
    try:
        assert store(reopened, clock).by_token(kept.token) == kept
    finally:
        reopened.close()


def test_tokens_are_unguessable_and_ids_numbers_below_2_to_the_53(
    storage: SqliteStorage,
) -> None:
    results = store(storage, ManualClock(), max_bytes=10_000)
    kept = [results.put(b"x", "image/png", "key:a", {}) for _ in range(100)]
    assert all(TOKEN.fullmatch(item.token) for item in kept)
    assert len({item.token for item in kept}) == 100
    assert len({item.id for item in kept}) == 100
    assert all(isinstance(item.id, int) and 1 <= item.id < 2**53 for item in kept)
    ids = sorted(item.id for item in kept)
    assert ids[-1] - ids[0] > 10_000  # random, not a counter


def test_only_the_owner_fetches_by_id(storage: SqliteStorage) -> None:
    results = store(storage, ManualClock())
    kept = results.put(b"x", "image/png", "key:a", {})
    assert results.by_id(kept.id, "key:b") is None
    assert results.by_id(kept.id, "key:a") == kept


def test_the_cap_is_the_stores(storage: SqliteStorage) -> None:
    clock = ManualClock()
    results = store(storage, clock, max_bytes=10)
    first = results.put(b"aaaaaa", "image/png", "o", {})
    clock.advance(1)
    second = results.put(b"bbbbb", "image/png", "o", {})  # 11 in all: the first goes
    assert results.by_token(first.token) is None and results.by_token(second.token) == second
    assert storage.result_bytes() == 5
    with pytest.raises(ValueError):
        results.put(b"x" * 11, "image/png", "o", {})


def test_purge_uses_the_clock(storage: SqliteStorage) -> None:
    clock = ManualClock()
    results = store(storage, clock, ttl_s=10)
    old = results.put(b"1", "image/png", "o", {})
    clock.advance(5)
    young = results.put(b"2", "image/png", "o", {})
    clock.advance(5)
    assert results.purge() == 1
    assert results.by_token(old.token) is None and results.by_token(young.token) == young
    assert results.purge() == 0
    clock.advance(5)
    assert results.purge() == 1 and storage.result_bytes() == 0


@pytest.mark.parametrize(("ttl_s", "max_bytes"), [(0, 10), (-1, 10), (10, 0)])
def test_bounds_must_be_positive(storage: SqliteStorage, ttl_s: float, max_bytes: int) -> None:
    with pytest.raises(ValueError):
        ResultStore(storage, ttl_s, max_bytes)
    assert ResultStore(storage, 0.001, 1).max_bytes == 1
