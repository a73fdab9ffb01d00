"""What both storage backends decide the same way: times, result ids and
tokens, which kept results make room for a new one, argument checks."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterable

Clock = Callable[[], dt.datetime]

# JavaScript clients read JSON numbers as doubles: ids stay exact below 2**53.
RESULT_ID_LIMIT = 2**53
_TOKEN_BYTES = 24  # 192 random bits, 32 URL-safe characters


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def to_ms(moment: dt.datetime) -> int:
    """Milliseconds since the epoch (what the API shows); naive times are refused
    rather than read as local time."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("storage times must be timezone-aware")
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def from_ms(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)


def truncate_ms(moment: dt.datetime) -> dt.datetime:
    """UTC, whole milliseconds."""
    return from_ms(to_ms(moment))


def new_result_id() -> int:
    # Random, not sequential: the number says nothing about how busy the server is.
    return 1 + secrets.randbelow(RESULT_ID_LIMIT - 1)


def new_token() -> str:
    return secrets.token_urlsafe(_TOKEN_BYTES)


def check_result_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValueError(f"a result of {size} bytes exceeds the cap of {max_bytes}")


def evictions(kept: Iterable[tuple[int, int]], incoming: int, max_bytes: int) -> list[int]:
    """The ids to drop so `incoming` more bytes fit under `max_bytes`. `kept` is
    (id, size) of every kept result, the soonest to expire first."""
    rows = list(kept)
    total = sum(size for _, size in rows)
    dropped: list[int] = []
    for number, size in rows:
        if total + incoming <= max_bytes:
            break
        dropped.append(number)
        total -= size
    return dropped


def check_take(take: int) -> None:
    if take < 1:
        raise ValueError("a page holds at least one image")
