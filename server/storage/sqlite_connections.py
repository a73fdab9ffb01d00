"""SQLite plumbing for the embedded backend: the schema, a small pool of
connections (one thread at a time each) and the mapping of sqlite and OS errors
to StorageError."""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from . import StorageError

BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another before failing
POOL_SIZE = 8

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    size INTEGER NOT NULL,
    digest TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    public_token TEXT UNIQUE,
    expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS images_by_owner ON images (owner, created_at, seq);
CREATE INDEX IF NOT EXISTS images_by_digest ON images (digest);
CREATE INDEX IF NOT EXISTS images_by_expiry ON images (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE,
    token TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    media_type TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_expiry ON results (expires_at, seq);
CREATE INDEX IF NOT EXISTS results_by_digest ON results (digest);
CREATE TABLE IF NOT EXISTS usage (
    owner TEXT NOT NULL,
    day TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (owner, day)
) WITHOUT ROWID;
"""


@contextlib.contextmanager
def failures(action: str) -> Iterator[None]:
    """sqlite and OS errors become StorageError (a 503), with the cause chained for the log."""
    try:
        yield
    except sqlite3.Error as error:
        raise StorageError(f"could not {action}: {error}") from error
    except OSError as error:
        raise StorageError(
            f"could not {action}: {error.strerror or type(error).__name__}"
        ) from error


class Pool:
    """Up to `size` connections, each used by one thread at a time."""

    def __init__(self, path: Path, size: int) -> None:
        self._path = path
        self._size = size
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        # isolation_level None: no implicit transactions, each is opened by hand
        # (BEGIN IMMEDIATE for writes). `timeout` is SQLite's busy timeout.
        connection = sqlite3.connect(
            self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA synchronous = FULL")
        return connection

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        connection = self._take()
        try:
            yield connection
        finally:
            self._give_back(connection)

    def _give_back(self, connection: sqlite3.Connection) -> None:
        try:
            if connection.in_transaction:  # a failure left it open: never hand it on so
                connection.execute("ROLLBACK")
        except sqlite3.Error:
            # Unusable: drop it, so the pool opens a fresh one in its place.
            with self._lock:
                if connection in self._all:
                    self._all.remove(connection)
            connection.close()
            return
        self._idle.put(connection)

    def _take(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StorageError("the storage is closed")
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                if len(self._all) < self._size:
                    self._all.append(self._connect())
                    return self._all[-1]
        try:
            return self._idle.get(timeout=BUSY_TIMEOUT_S)
        except queue.Empty:
            raise StorageError("no database connection came free in time") from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for connection in self._all:
                connection.close()
            self._all.clear()
