"""API keys: which presented keys are accepted."""

from __future__ import annotations

import hashlib
import hmac


class Keyring:
    """The configured keys. With none configured, any non-empty key is accepted,
    so a fresh `make run` works without set-up."""

    def __init__(self, keys: frozenset[str]) -> None:
        # Compare digests: equal lengths make compare_digest's time independent of the key.
        self._digests = [_digest(key) for key in keys]

    @property
    def open(self) -> bool:
        return not self._digests

    def accepts(self, presented: str | None) -> bool:
        if not presented:
            return False
        if self.open:
            return True
        digest = _digest(presented)
        # Check every key, never stopping early, so timing says nothing about which matched.
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        return matched

    @staticmethod
    def identity(presented: str) -> str:
        """A stable, non-reversible name for a key: what the rate limiter stores."""
        return "key:" + _digest(presented).hex()[:32]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()
