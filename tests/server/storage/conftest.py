"""The `storage` fixture: every contract test runs once per backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from server.storage import Storage
from server.storage.common import utc_now
from server.storage.postgres import PostgresStorage
from server.storage.sqlite import SqliteStorage

HeldDigests = Callable[[], set[str]]


class SettableClock:
    """The storage's clock: real time unless a test pins `fixed`."""

    def __init__(self) -> None:
        self.fixed: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        return self.fixed if self.fixed is not None else utc_now()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the backend keeps its data: a folder, or a fresh database's URL."""
    if backend == "sqlite":
        return str(tmp_path / "data")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def open_backend(
    backend: str, location: str, clock: SettableClock
) -> Iterator[Callable[[], Storage]]:
    """Opens (another) storage on the test's data; all are closed at the end."""
    opened: list[Storage] = []

    def open_one() -> Storage:
        storage: Storage = (
            SqliteStorage(Path(location), clock=clock)
            if backend == "sqlite"
            else PostgresStorage(location, clock=clock)
        )
        opened.append(storage)
        return storage

    yield open_one
    for storage in opened:
        storage.close()


@pytest.fixture
def storage(open_backend: Callable[[], Storage]) -> Storage:
    return open_backend()


@pytest.fixture
def held_digests(backend: str, location: str) -> HeldDigests:
    """The digests whose image bytes the backend still holds (files, or blob rows)."""

    def files() -> set[str]:
        root = Path(location) / "blobs"
        return {path.name for path in root.glob("??/*")}

    def rows() -> set[str]:
        with psycopg.connect(location) as connection:
            return {digest for (digest,) in connection.execute("SELECT digest FROM blobs")}

    return files if backend == "sqlite" else rows
