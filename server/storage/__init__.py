"""Durable storage: stored images (the IMG Processing dialect), kept results
(ModelsLab's result URLs) and usage counts, behind one interface with two backends.

- `SqliteStorage` (server/storage/sqlite.py): the embedded default. SQLite in WAL
  mode for the rows, a content-addressed file store (server/storage/blobs.py) for
  the bytes, both under `MATTE_DATA_DIR`. One server process.
- `PostgresStorage` (server/storage/postgres.py): `MATTE_DATABASE_URL`; rows and
  bytes in PostgreSQL, so several replicas serve one set of images and results.

Every method is synchronous and may block on disk or network: async callers run
them in a thread (`starlette.concurrency.run_in_threadpool`). Implementations
are safe to call from many threads at once.

Durability rule for both backends: a row is committed only after its bytes are
durable, and bytes are removed only once no row refers to them, so a crash at
any point leaves the old state or the new one, never a row pointing at missing
or partial bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from ..settings import Settings

ImageFormat = Literal["jpeg", "png", "webp"]


@dataclass(frozen=True)
class NewImage:
    """What a caller hands `add_image`: the storage adds the id's row and time."""

    id: str  # "image_" + 24 lowercase letters and digits, made by the caller
    owner: str  # Keyring.identity of the key that created it
    name: str
    format: ImageFormat
    width: int
    height: int
    data: bytes
    # When the image may be deleted by `purge` (keys starting "test_" may get a
    # maximum age); None: kept until deleted.
    expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class StoredImage:
    id: str
    owner: str
    name: str
    format: ImageFormat
    width: int
    height: int
    size: int  # len(data)
    digest: str  # sha256 hex of the bytes: their address in the store
    # UTC, truncated to milliseconds (what the API shows), set by the storage.
    created_at: dt.datetime
    # The unguessable token of its public URL while published, else None.
    public_token: str | None
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class Page:
    """One page of an owner's images, newest first."""

    images: Sequence[StoredImage]
    # The id that starts the next (older) page, and the one that starts the
    # previous (newer) page of the same size; None at either end.
    next_id: str | None
    previous_id: str | None


@dataclass(frozen=True)
class KeptResult:
    """A finished image kept for a while for an API that answers with a URL."""

    id: int  # below 2**53 (JavaScript clients read numbers as doubles)
    token: str  # unguessable: the URL's only secret
    data: bytes
    media_type: str
    owner: str
    expires_at: float  # unix seconds
    # What the dialect needs to answer a fetch for this result again (JSON-able).
    details: Mapping[str, Any]


class StorageError(Exception):
    """The storage could not do what was asked (disk full, database down): a 503."""


class Storage(Protocol):
    # --- images ---------------------------------------------------------------------------
    def add_image(self, image: NewImage) -> StoredImage:
        """Store the bytes durably, then commit the row. A duplicate id raises ValueError."""
        ...

    def image(self, image_id: str, owner: str) -> StoredImage | None:
        """The image, if it exists and `owner` created it (anyone else: None, as if absent)."""
        ...

    def image_data(self, image: StoredImage) -> bytes:
        """The image's bytes (StorageError if they cannot be read)."""
        ...

    def page(self, owner: str, take: int, start: str | None) -> Page | None:
        """Up to `take` of `owner`'s images, newest first, starting at the image
        `start` (inclusive; None: the newest). None if `start` is not one of
        `owner`'s images. Ties in created_at are broken by insertion order."""
        ...

    def delete_image(self, image_id: str, owner: str) -> bool:
        """Remove the row (and its public URL); the bytes go once no row refers to
        them. False if there was no such image of `owner`."""
        ...

    def set_public_token(self, image_id: str, owner: str, token: str | None) -> StoredImage | None:
        """Publish (a token) or unpublish (None); the updated image, or None if absent."""
        ...

    def published(self, token: str) -> StoredImage | None:
        """The image published under `token`, whoever owns it."""
        ...

    def purge_images(self, now: dt.datetime) -> int:
        """Delete images whose `expires_at` has passed; how many went."""
        ...

    # --- usage ----------------------------------------------------------------------------
    def count_usage(self, owner: str, day: dt.date, images: int) -> None:
        """Add `images` to `owner`'s count for `day` (atomic across replicas)."""
        ...

    def usage(self, owner: str) -> Mapping[dt.date, int]:
        """`owner`'s counts per day, oldest first."""
        ...

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
        """Keep `data` until `expires_at`, first dropping the results that expire
        soonest while all kept results would exceed `max_bytes` together. Picks a
        fresh token and a fresh id. ValueError if `data` alone exceeds `max_bytes`."""
        ...

    def result_by_token(self, token: str, now: float) -> KeptResult | None:
        """The result with this token, unless it has expired by `now`."""
        ...

    def result_by_id(self, number: int, owner: str, now: float) -> KeptResult | None:
        """The result numbered `number` if `owner` made it and it has not expired."""
        ...

    def purge_results(self, now: float) -> int:
        """Delete expired results; how many went."""
        ...

    def result_bytes(self) -> int:
        """The bytes all kept results hold together (expired ones not yet purged included)."""
        ...

    # --- lifecycle ------------------------------------------------------------------------
    def close(self) -> None: ...


def open_storage(settings: Settings) -> Storage:
    """The backend the settings name: PostgreSQL when `database_url` is set,
    else SQLite and files under `settings.storage_dir`. Creates the schema
    (idempotent), and on SQLite cleans up what an interrupted write left
    (temporary files, bytes no row refers to)."""
    if settings.database_url:
        from .postgres import PostgresStorage

        return PostgresStorage(settings.database_url)
    from .sqlite import SqliteStorage

    return SqliteStorage(settings.storage_dir)
