"""What only the SQLite backend promises: its files, WAL, and clean-up after a crash."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.settings import Settings
from server.storage import StorageError, open_storage
from server.storage.blobs import BlobStore
from server.storage.sqlite import SqliteStorage
from tests.server.storage.test_contract import new_image


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def storage(root: Path) -> Iterator[SqliteStorage]:
    storage = SqliteStorage(root)
    yield storage
    storage.close()


def blob_files(root: Path) -> set[str]:
    return {path.name for path in (root / "blobs").glob("??/*")}


def test_open_storage_without_a_database_url_is_sqlite_under_the_data_dir(root: Path) -> None:
    storage = open_storage(Settings(data_dir=root))
    try:
        assert isinstance(storage, SqliteStorage)
        storage.add_image(new_image(1))
    finally:
        storage.close()
    assert (root / "matte.db").is_file()


def test_the_database_is_in_wal_mode_with_full_sync(root: Path, storage: SqliteStorage) -> None:
    with sqlite3.connect(root / "matte.db") as outside:
        assert outside.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with storage._pool.connection() as connection:
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_bytes_live_once_at_their_digest(root: Path, storage: SqliteStorage) -> None:
    data = b"some image bytes"
    digest = hashlib.sha256(data).hexdigest()
    storage.add_image(new_image(1, data=data))
    storage.add_image(new_image(2, data=data))
    path = root / "blobs" / digest[:2] / digest
    assert path.read_bytes() == data
    assert blob_files(root) == {digest}
    assert list((root / "blobs" / "tmp").iterdir()) == []


def test_kept_results_free_their_files(root: Path, storage: SqliteStorage) -> None:
    kept = storage.put_result(b"result bytes", "image/png", "alice", {}, 2000.0, 1000)
    assert blob_files(root) == {hashlib.sha256(b"result bytes").hexdigest()}
    storage.put_result(b"other bytes", "image/png", "alice", {}, 3000.0, 20)  # evicts `kept`
    assert storage.result_by_token(kept.token, 0.0) is None
    assert blob_files(root) == {hashlib.sha256(b"other bytes").hexdigest()}
    assert storage.purge_results(3000.0) == 1
    assert blob_files(root) == set()


def test_leftover_temporary_files_and_orphan_bytes_go_on_open(root: Path) -> None:
    first = SqliteStorage(root)
    kept = first.add_image(new_image(1))
    first.close()
    orphan = b"bytes whose row never committed"
    orphan_digest = hashlib.sha256(orphan).hexdigest()
    BlobStore(root / "blobs").write(orphan, orphan_digest)
    (root / "blobs" / "tmp" / "half-written").write_bytes(b"partial")
    stranger = root / "blobs" / "README"
    stranger.write_text("not a blob")
    assert blob_files(root) == {kept.digest, orphan_digest}

    again = SqliteStorage(root)
    try:
        assert blob_files(root) == {kept.digest}
        assert list((root / "blobs" / "tmp").iterdir()) == []
        assert stranger.exists()  # only the store's own names are swept
        assert again.image_data(kept) == new_image(1).data
    finally:
        again.close()


def test_a_crash_before_the_row_commits_leaves_no_image(
    root: Path, storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: SqliteStorage, connection: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SqliteStorage, "_commit", crash)
    monkeypatch.setattr(SqliteStorage, "_collect", lambda self, digests: None)  # died: no clean-up
    with pytest.raises(StorageError, match="disk I/O error"):
        storage.add_image(new_image(1))
    # The bytes are written, the row is not.
    assert blob_files(root) == {hashlib.sha256(new_image(1).data).hexdigest()}
    monkeypatch.undo()
    assert storage.image(new_image(1).id, "alice") is None
    storage.close()
    again = SqliteStorage(root)
    try:
        assert again.image(new_image(1).id, "alice") is None
        assert blob_files(root) == set()
    finally:
        again.close()


def test_a_failed_insert_removes_the_bytes_it_wrote(root: Path, storage: SqliteStorage) -> None:
    storage.add_image(new_image(1, data=b"first"))
    with pytest.raises(ValueError):
        storage.add_image(new_image(1, data=b"second"))
    assert blob_files(root) == {hashlib.sha256(b"first").hexdigest()}


def test_an_add_recreates_bytes_a_delete_removed_before_its_row_committed(
    root: Path, storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"identical bytes"
    old = storage.add_image(new_image(1, data=data))
    write = BlobStore.write

    def write_then_race(self: BlobStore, data: bytes, digest: str) -> None:
        write(self, data, digest)
        # A delete of the old image lands after the new image's bytes are written
        # (they are the same file) and before its row commits: it unlinks them.
        monkeypatch.setattr(BlobStore, "write", write)
        assert storage.delete_image(old.id, "alice")
        assert blob_files(root) == set()

    monkeypatch.setattr(BlobStore, "write", write_then_race)
    new = storage.add_image(new_image(2, data=data))
    assert storage.image_data(new) == data


def test_missing_or_corrupt_bytes_raise_storage_error(root: Path, storage: SqliteStorage) -> None:
    image = storage.add_image(new_image(1))
    path = root / "blobs" / image.digest[:2] / image.digest
    path.write_bytes(b"flipped bits")
    with pytest.raises(StorageError):
        storage.image_data(image)
    path.unlink()
    with pytest.raises(StorageError):
        storage.image_data(image)


def test_a_result_whose_file_vanished_with_its_row_is_absent(
    root: Path, storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = storage.put_result(b"result", "image/png", "alice", {}, 2000.0, 1000)
    read = BlobStore.read

    def read_after_purge(self: BlobStore, digest: str) -> bytes:
        # A purge runs between reading the row and reading the file.
        monkeypatch.setattr(BlobStore, "read", read)
        assert storage.purge_results(2000.0) == 1
        return read(self, digest)

    monkeypatch.setattr(BlobStore, "read", read_after_purge)
    assert storage.result_by_token(kept.token, 1000.0) is None


def test_a_result_whose_file_vanished_under_its_row_raises(
    root: Path, storage: SqliteStorage
) -> None:
    kept = storage.put_result(b"result", "image/png", "alice", {}, 2000.0, 1000)
    digest = hashlib.sha256(b"result").hexdigest()
    (root / "blobs" / digest[:2] / digest).unlink()
    with pytest.raises(StorageError):
        storage.result_by_token(kept.token, 1000.0)


def test_an_unusable_folder_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("in the way")
    with pytest.raises(StorageError):
        SqliteStorage(blocker / "data")


def test_writers_wait_for_each_other_instead_of_failing(root: Path, storage: SqliteStorage) -> None:
    # Another connection holds the write lock briefly; the add waits it out.
    outside = sqlite3.connect(root / "matte.db", isolation_level=None, check_same_thread=False)
    outside.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, lambda: outside.execute("COMMIT"))
    release.start()
    try:
        stored = storage.add_image(new_image(1))
    finally:
        release.join()
        outside.close()
    assert storage.image(stored.id, "alice") == stored


def test_blob_writes_leave_nothing_behind_when_they_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.open()

    sync = os.fsync

    def no_space(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # folders still sync: the file write fails
            raise OSError(28, "No space left on device")
        sync(fd)

    monkeypatch.setattr("server.storage.blobs.os.fsync", no_space)
    digest = hashlib.sha256(b"data").hexdigest()
    with pytest.raises(OSError):
        store.write(b"data", digest)
    assert not store.exists(digest)
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_the_blob_store_refuses_names_that_are_not_digests(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")
