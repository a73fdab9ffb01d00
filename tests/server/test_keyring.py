from __future__ import annotations

import hashlib
import hmac

import pytest

from server.dialects.stability import bearer_key, reply_kind
from server.key_limits import KeyLimits, Rate
from server.keyring import Keyring

KEYS = ("sk-1", "sk-2", "sk-3", "sk-\u00e9t\u00e9", "sk-5")


@pytest.mark.parametrize(
    ("presented", "accepted"),
    [
        *((key, True) for key in KEYS),
        ("sk-6", False),
        ("sk-1 ", False),
        ("SK-1", False),
        ("sk-", False),
        ("", False),
        (None, False),
    ],
)
def test_configured_keys_only(presented: str | None, accepted: bool) -> None:
    ring = Keyring(frozenset(KEYS))
    assert not ring.open
    assert ring.accepts(presented) is accepted


@pytest.mark.parametrize(
    ("presented", "accepted"), [("whatever", True), ("", False), (None, False)]
)
def test_open_ring_takes_any_non_empty_key(presented: str | None, accepted: bool) -> None:
    ring = Keyring(frozenset())
    assert ring.open
    assert ring.accepts(presented) is accepted


@pytest.mark.parametrize("presented", [*KEYS, "sk-wrong"])
def test_every_key_is_compared_whichever_matches(
    monkeypatch: pytest.MonkeyPatch, presented: str
) -> None:
    # No early exit: the time taken must not say which key (if any) matched.
    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    ring = Keyring(frozenset(KEYS))
    # keyring.py calls it through the module, so patching the module reaches it.
    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert ring.accepts(presented) is (presented in KEYS)
    expected = {hashlib.sha256(key.encode()).digest() for key in KEYS}
    assert len(compared) == len(KEYS)
    assert set(compared) == expected


def test_identity_is_a_truncated_sha256_of_the_key() -> None:
    for key in KEYS:
        # An independent reference for the documented scheme.
        assert Keyring.identity(key) == "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
    assert len(Keyring.identity("sk-1")) == 4 + 32


def test_identities_differ_per_key_and_do_not_contain_it() -> None:
    keys = [*KEYS, "sk-secret-value"]
    identities = {Keyring.identity(key) for key in keys}
    assert len(identities) == len(keys)
    for key in keys:
        identity = Keyring.identity(key)
        assert identity == Keyring.identity(key)  # stable
        assert key not in identity


def test_bearer_and_bare_keys() -> None:
    assert bearer_key("Bearer sk-1") == "sk-1"
    assert bearer_key("sk-1") == "sk-1"
    assert bearer_key("Bearer ") is None and bearer_key(None) is None


def test_accept_parsing() -> None:
    assert reply_kind(None) == "image" and reply_kind("*/*") == "image"
    assert reply_kind("application/json") == "json"
    assert reply_kind("application/json; charset=utf-8") == "json"


def test_limits_are_found_by_identity_and_the_ring_keeps_no_key_text() -> None:
    own = KeyLimits(Rate(300, 10.0), 4)
    ring = Keyring(frozenset(KEYS), {"sk-1": own})
    assert ring.limits(Keyring.identity("sk-1")) == own
    assert ring.limits(Keyring.identity("sk-2")) == KeyLimits()
    assert ring.limits("ip:203.0.113.7") == KeyLimits()
    assert "sk-1" not in repr(vars(ring))
