"""The embedded backend: rows in SQLite (WAL, synchronous=FULL), bytes in the
content-addressed file store beside it (blobs.py), both under one folder.

Bytes are written and synced before the row that names them commits. A file
is unlinked only inside a write transaction that first finds no row naming
its digest, and a writer re-creates its file inside the transaction that
inserts its row, so the two never interleave into a row without bytes (SQLite
has one writer at a time). A crash can leave a file no row names; opening the
store removes those, and leftover temporary files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import KeptResult, NewImage, Page, StorageError, StoredImage
from .blobs import BlobStore, digest_of
from .common import (
    Clock,
    check_result_size,
    check_take,
    evictions,
    from_ms,
    to_ms,
    truncate_ms,
    utc_now,
)
from .queries import Queries, ResultRow
from .sqlite_connections import POOL_SIZE, SCHEMA, Pool, failures

log = logging.getLogger("matte.storage")

DATABASE = "matte.db"
BLOBS = "blobs"

# Times as milliseconds since the epoch, days as ISO text; results name their file.
QUERIES = Queries(
    placeholder="?",
    store_time=to_ms,
    load_time=from_ms,
    store_day=dt.date.isoformat,
    load_day=dt.date.fromisoformat,
    result_payload="digest",
)


class SqliteStorage:
    def __init__(self, root: Path, *, clock: Clock = utc_now) -> None:
        """Open (creating if missing) the store under `root`. `clock` sets created_at."""
        self._clock = clock
        self._blobs = BlobStore(root / BLOBS)
        self._pool = Pool(root / DATABASE, POOL_SIZE)
        with failures("open the storage"):
            root.mkdir(parents=True, exist_ok=True)
            self._blobs.open()
            with self._pool.connection() as connection:
                mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise StorageError(f"SQLite refused WAL mode (journal mode {mode})")
                # One transaction, inside the script: executescript commits whatever
                # transaction was open before it runs.
                connection.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
            self._sweep()

    # --- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: SQLite's single writer lock from the first statement."""
        with self._pool.connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            self._commit(connection)

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot over several statements."""
        with self._pool.connection() as connection:
            connection.execute("BEGIN")
            yield connection
            connection.execute("COMMIT")

    def _commit(self, connection: sqlite3.Connection) -> None:
        connection.execute("COMMIT")

    @staticmethod
    def _referenced(connection: sqlite3.Connection, digest: str) -> bool:
        row = connection.execute(
            "SELECT EXISTS (SELECT 1 FROM images WHERE digest = ?)"
            " OR EXISTS (SELECT 1 FROM results WHERE digest = ?)",
            (digest, digest),
        ).fetchone()
        return bool(row[0])

    def _sweep(self) -> None:
        """Remove files no row names (a crash between a file and its row leaves them)."""
        with self._write() as connection:
            named = {
                digest
                for (digest,) in connection.execute(
                    "SELECT digest FROM images UNION SELECT digest FROM results"
                )
            }
            for digest in list(self._blobs.digests()):
                if digest not in named:
                    self._blobs.remove(digest)

    def _collect(self, digests: Iterable[str]) -> None:
        """Unlink the files of `digests` that no row names any more. A failure only
        leaves files behind, which the next open removes, so it is logged, not raised."""
        unique = set(digests)
        if not unique:
            return
        try:
            with self._write() as connection:
                for digest in unique:
                    if not self._referenced(connection, digest):
                        self._blobs.remove(digest)
        except (sqlite3.Error, OSError):
            log.warning("could not remove unreferenced stored bytes (the next start will)")

    def _purge(self, table: str, cutoff: float) -> int:
        """Delete `table`'s rows expired by `cutoff` (as the table stores times), then
        their files; how many rows went."""
        with self._write() as connection:
            where = f"FROM {table} WHERE expires_at <= ?"
            digests = [
                digest for (digest,) in connection.execute(f"SELECT digest {where}", (cutoff,))
            ]
            connection.execute(f"DELETE {where}", (cutoff,))
        self._collect(digests)
        return len(digests)

    def _store(self, data: bytes, digest: str) -> None:
        """Inside a write transaction: make sure the file is there. A delete may have
        unlinked it after our first write, before this transaction took the lock."""
        if not self._blobs.exists(digest):
            self._blobs.write(data, digest)

    # --- images ---------------------------------------------------------------------------

    def add_image(self, image: NewImage) -> StoredImage:
        digest = digest_of(image.data)
        expires = None if image.expires_at is None else truncate_ms(image.expires_at)
        with failures("store the image"):
            self._blobs.write(image.data, digest)
            try:
                with self._write() as connection:
                    self._store(image.data, digest)
                    created = truncate_ms(self._clock())
                    stored = QUERIES.add_image(connection, image, digest, created, expires)
            except BaseException as error:
                self._collect([digest])
                if isinstance(error, sqlite3.IntegrityError):
                    raise ValueError(f"an image with id {image.id!r} exists") from error
                raise
        return stored

    def image(self, image_id: str, owner: str) -> StoredImage | None:
        with failures("read the image"), self._pool.connection() as connection:
            return QUERIES.image(connection, image_id, owner)

    def image_data(self, image: StoredImage) -> bytes:
        with failures("read the image's bytes"):
            data = self._blobs.read(image.digest)
        if digest_of(data) != image.digest:
            raise StorageError("the stored bytes do not match their digest")
        return data

    def page(self, owner: str, take: int, start: str | None) -> Page | None:
        check_take(take)
        with failures("list images"), self._read() as connection:
            return QUERIES.page(connection, owner, take, start)

    def delete_image(self, image_id: str, owner: str) -> bool:
        with failures("delete the image"):
            with self._write() as connection:
                row = connection.execute(
                    "SELECT digest FROM images WHERE id = ? AND owner = ?", (image_id, owner)
                ).fetchone()
                if row is None:
                    return False
                connection.execute("DELETE FROM images WHERE id = ?", (image_id,))
            self._collect([row[0]])
        return True

    def set_public_token(self, image_id: str, owner: str, token: str | None) -> StoredImage | None:
        with failures("publish the image"):
            try:
                with self._write() as connection:
                    return QUERIES.set_public_token(connection, image_id, owner, token)
            except sqlite3.IntegrityError as error:
                raise ValueError("another image is published under this token") from error

    def published(self, token: str) -> StoredImage | None:
        with failures("read the image"), self._pool.connection() as connection:
            return QUERIES.published(connection, token)

    def purge_images(self, now: dt.datetime) -> int:
        cutoff = to_ms(now)
        with failures("delete expired images"):
            return self._purge("images", cutoff)

    # --- usage ----------------------------------------------------------------------------

    def count_usage(self, owner: str, day: dt.date, images: int) -> None:
        with failures("count usage"), self._write() as connection:
            QUERIES.count_usage(connection, owner, day, images)

    def usage(self, owner: str) -> Mapping[dt.date, int]:
        with failures("read usage"), self._pool.connection() as connection:
            return QUERIES.usage(connection, owner)

    # --- kept results ---------------------------------------------------------------------

    def put_result(
        self,
        data: bytes,
        media_type: str,
        owner: str,
        details: Mapping[str, Any],
        expires_at: float,
        max_bytes: int,
    ) -> KeptResult:
        check_result_size(len(data), max_bytes)
        kept_details = dict(details)
        encoded = json.dumps(kept_details)
        digest = digest_of(data)
        with failures("keep the result"):
            self._blobs.write(data, digest)
            try:
                with self._write() as connection:
                    dropped = self._make_room(connection, len(data), max_bytes)
                    self._store(data, digest)
                    number, token = QUERIES.fresh_result_names(connection)
                    row = ResultRow(number, token, owner, media_type, digest, expires_at, encoded)
                    QUERIES.add_result(connection, row, len(data))
            except BaseException:
                self._collect([digest])
                raise
            self._collect(dropped)
        return KeptResult(number, token, data, media_type, owner, expires_at, kept_details)

    @staticmethod
    def _make_room(connection: sqlite3.Connection, incoming: int, max_bytes: int) -> list[str]:
        """Drop the results that expire soonest until `incoming` fits; their digests."""
        drop = evictions(QUERIES.result_sizes(connection), incoming, max_bytes)
        digests: list[str] = []
        for number in drop:
            (digest,) = connection.execute(
                "SELECT digest FROM results WHERE id = ?", (number,)
            ).fetchone()
            digests.append(digest)
            connection.execute("DELETE FROM results WHERE id = ?", (number,))
        return digests

    def _kept(self, find: Callable[[sqlite3.Connection], ResultRow | None]) -> KeptResult | None:
        with failures("read the result"):
            with self._pool.connection() as connection:
                row = find(connection)
            if row is None:
                return None
            try:
                data = self._blobs.read(row.payload)
            except FileNotFoundError:
                # A purge or eviction may have taken it since the row was read.
                if self._kept_still(row.id):
                    raise
                return None
        return row.kept(data)

    def _kept_still(self, number: int) -> bool:
        with self._pool.connection() as connection:
            row = connection.execute("SELECT 1 FROM results WHERE id = ?", (number,)).fetchone()
        return row is not None

    def result_by_token(self, token: str, now: float) -> KeptResult | None:
        return self._kept(lambda connection: QUERIES.result_by_token(connection, token, now))

    def result_by_id(self, number: int, owner: str, now: float) -> KeptResult | None:
        return self._kept(lambda connection: QUERIES.result_by_id(connection, number, owner, now))

    def purge_results(self, now: float) -> int:
        with failures("delete expired results"):
            return self._purge("results", now)

    def result_bytes(self) -> int:
        with failures("measure the results"), self._pool.connection() as connection:
            return QUERIES.result_bytes(connection)

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        self._pool.close()
