"""What only the PostgreSQL backend promises: replicas starting together, and adds
and deletes of identical bytes from different transactions in either order."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

import server.storage.postgres as postgres_module
from server.settings import Settings
from server.storage import StorageError, open_storage
from server.storage.postgres import PostgresStorage
from tests.postgres_server import PostgresServer
from tests.server.storage.test_contract import new_image, run_at_once


@pytest.fixture
def storage(postgres_url: str) -> Iterator[PostgresStorage]:
    storage = PostgresStorage(postgres_url)
    yield storage
    storage.close()


def blob_digests(url: str) -> set[str]:
    with psycopg.connect(url) as connection:
        return {digest for (digest,) in connection.execute("SELECT digest FROM blobs")}


def in_thread(task: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(task())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_until_blocked(url: str, count: int = 1) -> None:
    """Until `count` sessions wait on a lock (the thread reached the contended row)."""
    with psycopg.connect(url, autocommit=True) as watcher:
        for _ in range(600):
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] >= count:
                return
            threading.Event().wait(0.05)
    raise AssertionError("the storage call never waited on the lock")


def test_open_storage_with_a_database_url_is_postgres(postgres_url: str, tmp_path: Path) -> None:
    storage = open_storage(Settings(data_dir=tmp_path, database_url=postgres_url))
    try:
        assert isinstance(storage, PostgresStorage)
        stored = storage.add_image(new_image(1))
        assert storage.image_data(stored) == new_image(1).data
    finally:
        storage.close()
    assert list(tmp_path.iterdir()) == []  # nothing on local disk


def test_replicas_starting_together_create_the_schema_once(postgres_url: str) -> None:
    opened: list[PostgresStorage] = []

    def start() -> None:
        opened.append(PostgresStorage(postgres_url))

    try:
        assert run_at_once([start] * 4) == []
    finally:
        for storage in opened:
            storage.close()
    assert len(opened) == 4


def test_a_second_replica_sees_the_first_ones_images(postgres_url: str) -> None:
    one, two = PostgresStorage(postgres_url), PostgresStorage(postgres_url)
    try:
        stored = one.add_image(new_image(1))
        kept = one.put_result(b"result", "image/png", "alice", {}, 2000.0, 1000)
        assert two.image(stored.id, "alice") == stored
        assert two.result_by_token(kept.token, 1000.0) == kept
    finally:
        one.close()
        two.close()


def test_times_read_back_in_utc_whatever_the_sessions_time_zone(postgres_url: str) -> None:
    # libpq's `options`: this replica's sessions answer timestamptz in Tokyo time.
    tokyo = PostgresStorage(postgres_url + "?options=-c%20TimeZone%3DAsia%2FTokyo")
    try:
        added = tokyo.add_image(new_image(1, expires_at=dt.datetime(2031, 1, 1, tzinfo=dt.UTC)))
        page = tokyo.page("alice", 1, None)
        assert page is not None
        for read in (tokyo.image(added.id, "alice"), *page.images):
            assert read == added and read is not None
            assert read.created_at.tzinfo == dt.UTC and read.expires_at is not None
            assert read.expires_at.tzinfo == dt.UTC
    finally:
        tokyo.close()


def test_an_add_waiting_on_a_delete_of_the_same_bytes_stores_them_again(
    storage: PostgresStorage, postgres_url: str
) -> None:
    data = b"identical bytes"
    old = storage.add_image(new_image(1, data=data))
    with psycopg.connect(postgres_url) as deleter:
        # The delete's transaction, by hand: row gone, blob row locked, not yet committed.
        deleter.execute("DELETE FROM images WHERE id = %s", (old.id,))
        deleter.execute("SELECT 1 FROM blobs WHERE digest = %s FOR UPDATE", (old.digest,))
        thread, outcome = in_thread(lambda: storage.add_image(new_image(2, data=data)))
        wait_until_blocked(postgres_url)
        deleter.execute("DELETE FROM blobs WHERE digest = %s", (old.digest,))
        deleter.commit()
    thread.join(timeout=30)
    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome
    new = storage.image(new_image(2).id, "alice")
    assert new is not None
    assert storage.image_data(new) == data


def test_a_delete_waiting_on_an_add_of_the_same_bytes_keeps_them(
    storage: PostgresStorage, postgres_url: str
) -> None:
    data = b"identical bytes"
    old = storage.add_image(new_image(1, data=data))
    new = new_image(2, data=data)
    with psycopg.connect(postgres_url) as adder:
        # The add's transaction, by hand, up to just before its commit.
        adder.execute(
            "INSERT INTO blobs (digest, data) VALUES (%s, %s)"
            " ON CONFLICT (digest) DO UPDATE SET digest = excluded.digest",
            (old.digest, data),
        )
        adder.execute(
            "INSERT INTO images (id, owner, name, format, width, height, size, digest,"
            " created_at) VALUES (%s, 'alice', 'n', 'png', 1, 1, %s, %s, now())",
            (new.id, len(data), old.digest),
        )
        thread, outcome = in_thread(lambda: storage.delete_image(old.id, "alice"))
        wait_until_blocked(postgres_url)
        adder.commit()
    thread.join(timeout=30)
    assert outcome == [True]
    stored = storage.image(new.id, "alice")
    assert stored is not None
    assert storage.image_data(stored) == data
    assert blob_digests(postgres_url) == {old.digest}


def test_an_unreachable_database_raises_storage_error(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_module, "POOL_TIMEOUT_S", 1.0)
    closed_port = PostgresServer(postgres_server.host, 1, postgres_server.user)
    with pytest.raises(StorageError, match="connect"):
        PostgresStorage(closed_port.url("postgres") + "?connect_timeout=1")


def test_storage_errors_do_not_echo_the_password(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_module, "POOL_TIMEOUT_S", 1.0)
    url = "postgresql://someone:sekrit-pass@127.0.0.1:1/db?connect_timeout=1"
    with pytest.raises(StorageError) as raised:
        PostgresStorage(url)
    assert "sekrit-pass" not in str(raised.value)
