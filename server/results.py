"""Finished images kept for a while, for APIs that answer with a URL instead of the image.

The policy lives here: how long a result is kept (`ttl_s`, on a wall clock, as
replicas share the rows) and how many bytes all of them may hold together (the
results that expire soonest go first when a new one would not fit). The rows
and bytes live in the durable storage (server/storage/), so a result stored by
one replica can be fetched from another. Each result has two names: an
unguessable `token` for its URL, which is served without a key, and a numeric
`id` for APIs that fetch by number, which only its owner's key can fetch.

Every method blocks on the storage: async callers run them in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .storage import KeptResult, Storage


class ResultStore:
    def __init__(
        self,
        storage: Storage,
        ttl_s: float,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s <= 0 or max_bytes < 1:
            raise ValueError("a result store needs a positive retention time and byte cap")
        self.storage = storage
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.clock = clock

    def put(
        self, data: bytes, media_type: str, owner: str, details: Mapping[str, Any]
    ) -> KeptResult:
        """Keep `data` for `ttl_s`, making room by dropping the results that expire first."""
        return self.storage.put_result(
            data, media_type, owner, details, self.clock() + self.ttl_s, self.max_bytes
        )

    def by_token(self, token: str) -> KeptResult | None:
        return self.storage.result_by_token(token, self.clock())

    def by_id(self, number: int, owner: str) -> KeptResult | None:
        """The result numbered `number`, if `owner` made it (anyone else: None, as if absent)."""
        return self.storage.result_by_id(number, owner, self.clock())

    def purge(self) -> int:
        """Drop every expired result; returns how many went."""
        return self.storage.purge_results(self.clock())
