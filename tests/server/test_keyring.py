from __future__ import annotations

from server.dialects.stability import bearer_key, reply_kind
from server.keyring import Keyring


def test_configured_keys_only() -> None:
    ring = Keyring(frozenset({"sk-1", "sk-2"}))
    assert ring.accepts("sk-1") and ring.accepts("sk-2")
    assert not ring.accepts("sk-3") and not ring.accepts("") and not ring.accepts(None)


def test_open_ring_takes_any_non_empty_key() -> None:
    ring = Keyring(frozenset())
    assert ring.accepts("whatever") and not ring.accepts("") and not ring.accepts(None)


def test_identity_does_not_contain_the_key() -> None:
    identity = Keyring.identity("sk-secret-value")
    assert "secret" not in identity and identity == Keyring.identity("sk-secret-value")


def test_bearer_and_bare_keys() -> None:
    assert bearer_key("Bearer sk-1") == "sk-1"
    assert bearer_key("sk-1") == "sk-1"
    assert bearer_key("Bearer ") is None and bearer_key(None) is None


def test_accept_parsing() -> None:
    assert reply_kind(None) == "image" and reply_kind("*/*") == "image"
    assert reply_kind("application/json") == "json"
    assert reply_kind("application/json; charset=utf-8") == "json"
