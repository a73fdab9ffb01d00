"""The shared backend: rows and bytes in PostgreSQL, so several replicas serve
one set of images and results.

Bytes live once per digest in `blobs`; image rows name their digest. Adding
upserts the blob row with ON CONFLICT DO UPDATE, which locks it (or inserts it
anew if a delete removed it meanwhile); deleting locks the blob row FOR UPDATE
and removes it only if no image names it, in the deleting transaction. So an
add and a delete of identical bytes serialise on that row and never leave an
image without its bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from . import KeptResult, NewImage, Page, StorageError, StoredImage
from .blobs import digest_of
from .common import Clock, check_result_size, check_take, evictions, truncate_ms, utc_now
from .queries import Queries, ResultRow

POOL_MIN, POOL_MAX = 1, 8
POOL_TIMEOUT_S = 30.0  # the longest wait for a connection, and for the first one on open
# Advisory lock keys (any fixed bigints): schema creation, and room-making for results
# (the byte cap holds across replicas only if one replica at a time makes room).
SCHEMA_LOCK = 0x6D617474_65000001
RESULTS_LOCK = 0x6D617474_65000002

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS blobs (digest text PRIMARY KEY, data bytea NOT NULL)",
    """CREATE TABLE IF NOT EXISTS images (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        owner text NOT NULL,
        name text NOT NULL,
        format text NOT NULL,
        width integer NOT NULL,
        height integer NOT NULL,
        size bigint NOT NULL,
        digest text NOT NULL REFERENCES blobs (digest),
        created_at timestamptz NOT NULL,
        public_token text UNIQUE,
        expires_at timestamptz
    )""",
    "CREATE INDEX IF NOT EXISTS images_by_owner ON images (owner, created_at, seq)",
    "CREATE INDEX IF NOT EXISTS images_by_digest ON images (digest)",
    "CREATE INDEX IF NOT EXISTS images_by_expiry ON images (expires_at)"
    " WHERE expires_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS results (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id bigint NOT NULL UNIQUE,
        token text NOT NULL UNIQUE,
        owner text NOT NULL,
        media_type text NOT NULL,
        data bytea NOT NULL,
        size bigint NOT NULL,
        expires_at double precision NOT NULL,
        details text NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS results_by_expiry ON results (expires_at, seq)",
    """CREATE TABLE IF NOT EXISTS usage (
        owner text NOT NULL,
        day date NOT NULL,
        count bigint NOT NULL,
        PRIMARY KEY (owner, day)
    )""",
)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC)


def _same(value: Any) -> Any:
    return value


# timestamptz and date columns (psycopg adapts datetime and date); results hold their bytes.
QUERIES = Queries(
    placeholder="%s",
    store_time=_same,
    load_time=_utc,
    store_day=_same,
    load_day=_same,
    result_payload="data",
)


@contextlib.contextmanager
def _failures(action: str) -> Iterator[None]:
    """Database errors become StorageError (a 503), with the cause chained for the log."""
    try:
        yield
    except psycopg.Error as error:
        summary = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise StorageError(f"could not {action}: {summary or type(error).__name__}") from error


class PostgresStorage:
    def __init__(self, url: str, *, clock: Clock = utc_now) -> None:
        """Connect to `url` and create the schema if missing. `clock` sets created_at."""
        self._clock = clock
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            url,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            timeout=POOL_TIMEOUT_S,
            # A replica outlives database restarts: check a connection before handing it out.
            check=ConnectionPool.check_connection,
            open=False,
        )
        try:
            with _failures("connect to the database"):
                self._pool.open(wait=True, timeout=POOL_TIMEOUT_S)
                with self._pool.connection() as connection:
                    # Two replicas starting at once would race on CREATE ... IF NOT EXISTS.
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    for statement in _SCHEMA:
                        connection.execute(statement)
        except BaseException:
            self._pool.close()
            raise

    @staticmethod
    def _collect(connection: psycopg.Connection[tuple[Any, ...]], digests: Iterable[str]) -> None:
        """Within the deleting transaction: drop the blobs no image names any more.
        Locking the blob row first waits out an add of the same bytes, whose image
        row this transaction's next statement then sees."""
        for digest in sorted(set(digests)):  # one lock order, so two purges cannot deadlock
            connection.execute("SELECT 1 FROM blobs WHERE digest = %s FOR UPDATE", (digest,))
            connection.execute(
                "DELETE FROM blobs WHERE digest = %s"
                " AND NOT EXISTS (SELECT 1 FROM images WHERE digest = %s)",
                (digest, digest),
            )

    # --- images ---------------------------------------------------------------------------

    def add_image(self, image: NewImage) -> StoredImage:
        digest = digest_of(image.data)
        expires = None if image.expires_at is None else truncate_ms(image.expires_at)
        with _failures("store the image"):
            try:
                with self._pool.connection() as connection:
                    # DO UPDATE, not DO NOTHING: it locks an existing row (waiting for a
                    # delete that holds it) and inserts anew if that delete removed it.
                    connection.execute(
                        "INSERT INTO blobs (digest, data) VALUES (%s, %b)"
                        " ON CONFLICT (digest) DO UPDATE SET digest = excluded.digest",
                        (digest, image.data),
                    )
                    created = truncate_ms(self._clock())
                    stored = QUERIES.add_image(connection, image, digest, created, expires)
            except psycopg.errors.UniqueViolation as error:
                raise ValueError(f"an image with id {image.id!r} exists") from error
        return stored

    def image(self, image_id: str, owner: str) -> StoredImage | None:
        with _failures("read the image"), self._pool.connection() as connection:
            return QUERIES.image(connection, image_id, owner)

    def image_data(self, image: StoredImage) -> bytes:
        with _failures("read the image's bytes"), self._pool.connection() as connection:
            row = connection.execute(
                "SELECT data FROM blobs WHERE digest = %s", (image.digest,), binary=True
            ).fetchone()
        if row is None:
            raise StorageError("the image's bytes are gone")
        return bytes(row[0])

    def page(self, owner: str, take: int, start: str | None) -> Page | None:
        check_take(take)
        with _failures("list images"), self._pool.connection() as connection:
            # One snapshot for the two or three statements.
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return QUERIES.page(connection, owner, take, start)

    def delete_image(self, image_id: str, owner: str) -> bool:
        with _failures("delete the image"), self._pool.connection() as connection:
            row = connection.execute(
                "DELETE FROM images WHERE id = %s AND owner = %s RETURNING digest",
                (image_id, owner),
            ).fetchone()
            if row is None:
                return False
            self._collect(connection, [row[0]])
        return True

    def set_public_token(self, image_id: str, owner: str, token: str | None) -> StoredImage | None:
        with _failures("publish the image"):
            try:
                with self._pool.connection() as connection:
                    return QUERIES.set_public_token(connection, image_id, owner, token)
            except psycopg.errors.UniqueViolation as error:
                raise ValueError("another image is published under this token") from error

    def published(self, token: str) -> StoredImage | None:
        with _failures("read the image"), self._pool.connection() as connection:
            return QUERIES.published(connection, token)

    def purge_images(self, now: dt.datetime) -> int:
        cutoff = truncate_ms(now)
        with _failures("delete expired images"), self._pool.connection() as connection:
            digests = [
                digest
                for (digest,) in connection.execute(
                    "DELETE FROM images WHERE expires_at <= %s RETURNING digest", (cutoff,)
                )
            ]
            self._collect(connection, digests)
        return len(digests)

    # --- usage ----------------------------------------------------------------------------

    def count_usage(self, owner: str, day: dt.date, images: int) -> None:
        with _failures("count usage"), self._pool.connection() as connection:
            QUERIES.count_usage(connection, owner, day, images)

    def usage(self, owner: str) -> Mapping[dt.date, int]:
        with _failures("read usage"), self._pool.connection() as connection:
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
        with _failures("keep the result"), self._pool.connection() as connection:
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (RESULTS_LOCK,))
            drop = evictions(QUERIES.result_sizes(connection), len(data), max_bytes)
            if drop:
                connection.execute("DELETE FROM results WHERE id = ANY(%s)", (drop,))
            # Under RESULTS_LOCK, so no other put takes the names before the insert.
            number, token = QUERIES.fresh_result_names(connection)
            row = ResultRow(number, token, owner, media_type, data, expires_at, encoded)
            QUERIES.add_result(connection, row, len(data))
        return KeptResult(number, token, data, media_type, owner, expires_at, kept_details)

    def _kept(self, find: Callable[[psycopg.Cursor[Any]], ResultRow | None]) -> KeptResult | None:
        with (
            _failures("read the result"),
            self._pool.connection() as connection,
            # Binary: the bytea comes as it is, not hex-encoded.
            connection.cursor(binary=True) as cursor,
        ):
            row = find(cursor)
        return None if row is None else row.kept(bytes(row.payload))

    def result_by_token(self, token: str, now: float) -> KeptResult | None:
        return self._kept(lambda cursor: QUERIES.result_by_token(cursor, token, now))

    def result_by_id(self, number: int, owner: str, now: float) -> KeptResult | None:
        return self._kept(lambda cursor: QUERIES.result_by_id(cursor, number, owner, now))

    def purge_results(self, now: float) -> int:
        with _failures("delete expired results"), self._pool.connection() as connection:
            cursor = connection.execute("DELETE FROM results WHERE expires_at <= %s", (now,))
            return cursor.rowcount

    def result_bytes(self) -> int:
        with _failures("measure the results"), self._pool.connection() as connection:
            return QUERIES.result_bytes(connection)

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        self._pool.close()
