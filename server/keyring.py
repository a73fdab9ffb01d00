"""API keys: which presented keys are accepted, and the limits each one has."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from .key_limits import KeyLimits

NO_LIMITS = KeyLimits()


class Keyring:
    """The configured keys. With none configured, any non-empty key is accepted,
    so a fresh `make run` works without set-up."""

    def __init__(self, keys: frozenset[str], limits: Mapping[str, KeyLimits] | None = None) -> None:
        # Compare digests: equal lengths make compare_digest's time independent of the key.
        self._digests = [_digest(key) for key in keys]
        # By identity, so the ring keeps no key text; only accepted keys are looked up.
        self._limits = {Keyring.identity(key): value for key, value in (limits or {}).items()}

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

    def limits(self, identity: str) -> KeyLimits:
        """The limits of the key with this `identity` (none set: the server's defaults)."""
        return self._limits.get(identity, NO_LIMITS)

    @staticmethod
    def identity(presented: str) -> str:
        """A stable, non-reversible name for a key: what the rate limiter stores."""
        return "key:" + _digest(presented).hex()[:32]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()
