"""Finished images kept for a while, for APIs that answer with a URL instead of the image.

Results live in memory, bounded in bytes (the oldest go first when a new one
would not fit) and in time (`ttl_s`, then they are gone). Memory rather than
files: nothing outlives the process or needs cleaning up on disk, and one
process serves every request. Each result has two names: an unguessable
`token` for its URL, which is served without a key, and a numeric `id` for
APIs that fetch by number, which only its owner's key can fetch.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# JavaScript clients read JSON numbers as doubles: ids stay exact below 2**53.
_ID_LIMIT = 2**53
_TOKEN_BYTES = 24  # 192 random bits, 32 URL-safe characters


@dataclass(frozen=True)
class Result:
    id: int
    token: str
    data: bytes
    media_type: str
    owner: str
    expires_at: float
    # What the dialect needs to answer a fetch for this result again.
    details: Mapping[str, Any]


class ResultStore:
    def __init__(
        self, ttl_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl_s <= 0 or max_bytes < 1:
            raise ValueError("a result store needs a positive retention time and byte cap")
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.clock = clock
        # Insertion order is expiry order (one ttl for all): the oldest is first.
        self._by_token: OrderedDict[str, Result] = OrderedDict()
        self._by_id: dict[int, Result] = {}
        self._bytes = 0

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._by_token)

    def put(self, data: bytes, media_type: str, owner: str, details: Mapping[str, Any]) -> Result:
        """Keep `data` for `ttl_s`, making room by dropping the oldest results."""
        if len(data) > self.max_bytes:
            raise ValueError(f"a result of {len(data)} bytes exceeds the store's cap")
        self.purge()
        while self._bytes + len(data) > self.max_bytes:
            self._drop(next(iter(self._by_token.values())))
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        number = self._new_id()
        result = Result(
            number, token, data, media_type, owner, self.clock() + self.ttl_s, dict(details)
        )
        self._by_token[token] = result
        self._by_id[number] = result
        self._bytes += len(data)
        return result

    def by_token(self, token: str) -> Result | None:
        return self._live(self._by_token.get(token))

    def by_id(self, number: int, owner: str) -> Result | None:
        """The result numbered `number`, if `owner` made it (anyone else: None, as if absent)."""
        result = self._live(self._by_id.get(number))
        if result is None or not secrets.compare_digest(result.owner, owner):
            return None
        return result

    def purge(self) -> int:
        """Drop every expired result; returns how many went."""
        now = self.clock()
        dropped = 0
        while self._by_token:
            oldest = next(iter(self._by_token.values()))
            if oldest.expires_at > now:
                break
            self._drop(oldest)
            dropped += 1
        return dropped

    def _live(self, result: Result | None) -> Result | None:
        if result is None:
            return None
        if result.expires_at <= self.clock():
            self._drop(result)
            return None
        return result

    def _drop(self, result: Result) -> None:
        del self._by_token[result.token]
        del self._by_id[result.id]
        self._bytes -= len(result.data)

    def _new_id(self) -> int:
        # Random, not sequential: the number says nothing about how busy the server is.
        while True:
            number = 1 + secrets.randbelow(_ID_LIMIT - 1)
            if number not in self._by_id:
                return number
