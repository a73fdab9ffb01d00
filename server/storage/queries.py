"""The SQL both backends run, written once: images, pages, usage and kept results.

Each query takes a DB-API-like connection (sqlite3's, psycopg's, or a psycopg
cursor) and runs inside whatever transaction the backend opened: transactions,
locking and where the bytes live stay in the backends. The SQL is written with
`?` placeholders; `Queries.placeholder` is what the backend's driver expects.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from . import KeptResult, NewImage, Page, StoredImage
from .common import new_result_id, new_token

_IMAGE_COLUMNS = (
    "id, owner, name, format, width, height, size, digest, created_at, public_token, expires_at"
)


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    def execute(self, query: str, params: Sequence[Any], /) -> Cursor: ...


class ResultRow(NamedTuple):
    """A kept result's row; `payload` is what the backend keeps for its bytes."""

    id: int
    token: str
    owner: str
    media_type: str
    payload: Any
    expires_at: float
    details: str  # JSON

    def kept(self, data: bytes) -> KeptResult:
        details = json.loads(self.details)
        return KeptResult(
            self.id, self.token, data, self.media_type, self.owner, self.expires_at, details
        )


@dataclass(frozen=True)
class Queries:
    """One backend's spelling of the shared SQL."""

    placeholder: str  # "?" (sqlite3) or "%s" (psycopg)
    # A UTC time of whole milliseconds as the backend stores it, and back (UTC).
    store_time: Callable[[dt.datetime], object]
    load_time: Callable[[Any], dt.datetime]
    store_day: Callable[[dt.date], object]
    load_day: Callable[[Any], dt.date]
    # The results column that holds the bytes, or names them.
    result_payload: str

    def _run(self, connection: Connection, sql: str, params: Sequence[Any] = ()) -> Cursor:
        # A plain replace is enough: this SQL has no literal "?", and no "%" (psycopg
        # would read one as a placeholder).
        return connection.execute(sql.replace("?", self.placeholder), params)

    def _image(self, row: Sequence[Any]) -> StoredImage:
        (number, owner, name, form, width, height, size, digest, created, token, expires) = row
        return StoredImage(
            id=number,
            owner=owner,
            name=name,
            format=form,
            width=width,
            height=height,
            size=size,
            digest=digest,
            created_at=self.load_time(created),
            public_token=token,
            expires_at=None if expires is None else self.load_time(expires),
        )

    def _one_image(self, cursor: Cursor) -> StoredImage | None:
        row = cursor.fetchone()
        return None if row is None else self._image(row)

    # --- images ---------------------------------------------------------------------------

    def add_image(
        self,
        connection: Connection,
        image: NewImage,
        digest: str,
        created: dt.datetime,
        expires: dt.datetime | None,
    ) -> StoredImage:
        """Insert the row (the bytes are the backend's). Times: UTC, whole milliseconds."""
        stored = StoredImage(
            id=image.id,
            owner=image.owner,
            name=image.name,
            format=image.format,
            width=image.width,
            height=image.height,
            size=len(image.data),
            digest=digest,
            created_at=created,
            public_token=None,
            expires_at=expires,
        )
        self._run(
            connection,
            f"INSERT INTO images ({_IMAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            (
                stored.id,
                stored.owner,
                stored.name,
                stored.format,
                stored.width,
                stored.height,
                stored.size,
                stored.digest,
                self.store_time(created),
                None if expires is None else self.store_time(expires),
            ),
        )
        return stored

    def image(self, connection: Connection, image_id: str, owner: str) -> StoredImage | None:
        return self._one_image(
            self._run(
                connection,
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ? AND owner = ?",
                (image_id, owner),
            )
        )

    def published(self, connection: Connection, token: str) -> StoredImage | None:
        return self._one_image(
            self._run(
                connection, f"SELECT {_IMAGE_COLUMNS} FROM images WHERE public_token = ?", (token,)
            )
        )

    def set_public_token(
        self, connection: Connection, image_id: str, owner: str, token: str | None
    ) -> StoredImage | None:
        """In one transaction (the update's row lock keeps the read consistent).
        A token another image holds raises the driver's integrity error."""
        self._run(
            connection,
            "UPDATE images SET public_token = ? WHERE id = ? AND owner = ?",
            (token, image_id, owner),
        )
        return self.image(connection, image_id, owner)

    def page(self, connection: Connection, owner: str, take: int, start: str | None) -> Page | None:
        """Storage.page, inside one snapshot (two or three statements)."""
        where, anchor = "owner = ?", [owner]
        newer: list[str] = []
        if start is not None:
            row = self._run(
                connection,
                "SELECT created_at, seq FROM images WHERE id = ? AND owner = ?",
                (start, owner),
            ).fetchone()
            if row is None:
                return None
            where += " AND (created_at, seq) <= (?, ?)"
            anchor += list(row)
            newer = [
                number
                for (number,) in self._run(
                    connection,
                    "SELECT id FROM images WHERE owner = ? AND (created_at, seq) > (?, ?)"
                    " ORDER BY created_at, seq LIMIT ?",
                    (owner, *row, take),
                )
            ]
        rows = self._run(
            connection,
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE {where}"
            " ORDER BY created_at DESC, seq DESC LIMIT ?",
            (*anchor, take + 1),
        ).fetchall()
        return Page(
            images=[self._image(row) for row in rows[:take]],
            next_id=rows[take][0] if len(rows) > take else None,
            previous_id=newer[-1] if newer else None,
        )

    # --- usage ----------------------------------------------------------------------------

    def count_usage(self, connection: Connection, owner: str, day: dt.date, images: int) -> None:
        self._run(
            connection,
            "INSERT INTO usage (owner, day, count) VALUES (?, ?, ?)"
            " ON CONFLICT (owner, day) DO UPDATE SET count = usage.count + excluded.count",
            (owner, self.store_day(day), images),
        )

    def usage(self, connection: Connection, owner: str) -> dict[dt.date, int]:
        rows = self._run(
            connection, "SELECT day, count FROM usage WHERE owner = ? ORDER BY day", (owner,)
        )
        return {self.load_day(day): int(count) for day, count in rows}

    # --- kept results ---------------------------------------------------------------------

    def result_sizes(self, connection: Connection) -> Iterable[tuple[int, int]]:
        """(id, size) of every kept result, the soonest to expire first."""
        return self._run(connection, "SELECT id, size FROM results ORDER BY expires_at, seq")

    def fresh_result_names(self, connection: Connection) -> tuple[int, str]:
        """An id and a token no result has. The caller holds what keeps another
        put from taking them before its insert (a write transaction, or a lock)."""
        while True:
            number, token = new_result_id(), new_token()
            taken = self._run(
                connection, "SELECT 1 FROM results WHERE id = ? OR token = ?", (number, token)
            ).fetchone()
            if taken is None:
                return number, token

    def add_result(self, connection: Connection, row: ResultRow, size: int) -> None:
        # psycopg sends bytes for a %s in binary, as it would for %b.
        self._run(
            connection,
            f"INSERT INTO results ({self._result_columns}, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*row, size),
        )

    def result_by_token(self, connection: Connection, token: str, now: float) -> ResultRow | None:
        return self._result(connection, "token = ? AND expires_at > ?", (token, now))

    def result_by_id(
        self, connection: Connection, number: int, owner: str, now: float
    ) -> ResultRow | None:
        return self._result(
            connection, "id = ? AND owner = ? AND expires_at > ?", (number, owner, now)
        )

    def result_bytes(self, connection: Connection) -> int:
        row = self._run(connection, "SELECT COALESCE(SUM(size), 0) FROM results").fetchone()
        return 0 if row is None else int(row[0])

    @property
    def _result_columns(self) -> str:
        # In ResultRow's order.
        return f"id, token, owner, media_type, {self.result_payload}, expires_at, details"

    def _result(
        self, connection: Connection, where: str, params: Sequence[Any]
    ) -> ResultRow | None:
        row = self._run(
            connection, f"SELECT {self._result_columns} FROM results WHERE {where}", params
        ).fetchone()
        return None if row is None else ResultRow(*row)
