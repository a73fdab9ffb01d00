"""services.py: what every model route checks before it reads the body, and in what order."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from starlette.requests import Request

from server.errors import ApiError, ConcurrencyLimited, RateLimited, Unauthorized, Unavailable
from server.key_limits import KeyLimits, Rate
from server.key_slots import HELD
from server.keyring import Keyring
from server.metrics import Metrics
from server.pipeline import Pipeline
from server.ratelimit import MemoryStore, RateLimiter, StoreUnavailable
from server.services import Readiness, Services, services_of
from server.settings import Settings
from tests.conftest import KEY
from tests.fakes import ManualClock

OTHER_KEY = "sk-other-key"
ADDRESS = "203.0.113.7"
# Stands in for the pipeline: admit only hands it out.
PIPELINE = cast(Pipeline, object())


class RecordingStore(MemoryStore):
    """A MemoryStore that notes which identity each hit was counted under."""

    def __init__(self) -> None:
        super().__init__(ManualClock())
        self.keys: list[str] = []

    async def take(self, key: str, limit: int, window_s: float, timeout_s: float) -> float | None:
        self.keys.append(key)
        return await super().take(key, limit, window_s, timeout_s)


def services(
    tmp_path: Path,
    limit: int = 3,
    state: str = "ready",
    pipeline: Pipeline | None = PIPELINE,
) -> tuple[Services, RecordingStore]:
    store = RecordingStore()
    limiter = RateLimiter(store, limit=limit, window_s=10, timeout_s=60)
    built = Services(
        Settings(cache_dir=tmp_path, api_keys=frozenset({KEY, OTHER_KEY})),
        Metrics(),
        Keyring(frozenset({KEY, OTHER_KEY})),
        limiter,
        readiness=Readiness(state),  # type: ignore[arg-type]
        pipeline=pipeline,
    )
    return built, store


def request(host: str | None = ADDRESS) -> Request:
    # The state SlotRelease gives each request: the slots it holds.
    scope: dict[str, object] = {"type": "http", "headers": [], "state": {HELD: []}}
    if host is not None:
        scope["client"] = (host, 40000)
    return Request(scope)


def admit(
    built: Services, req: Request, key: str | None, *, keyless_when_open: bool = False
) -> Pipeline:
    return asyncio.run(built.admit(req, key, keyless_when_open=keyless_when_open))


def rejected(built: Services, reason: str) -> float:
    value = built.metrics.registry.get_sample_value("matte_rejected_total", {"reason": reason})
    return value or 0.0


def outcome(built: Services, key: str | None, host: str | None = ADDRESS) -> str:
    """What admit did: 'ok', or the refusal's status."""
    try:
        assert admit(built, request(host), key) is PIPELINE
    except ApiError as exc:
        return str(exc.status)
    return "ok"


def key_identity(key: str) -> str:
    # An independent reference: the first 128 bits of the key's SHA-256, in hex.
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def test_a_valid_key_gets_the_pipeline_and_is_counted_under_its_own_identity(
    tmp_path: Path,
) -> None:
    built, store = services(tmp_path)
    assert admit(built, request(), KEY) is PIPELINE
    assert admit(built, request(), OTHER_KEY) is PIPELINE
    assert store.keys == [key_identity(KEY), key_identity(OTHER_KEY)]
    assert rejected(built, "unauthorized") == rejected(built, "rate_limited") == 0


@pytest.mark.parametrize("key", [None, "", "sk-wrong"], ids=["none", "empty", "wrong"])
def test_a_caller_without_a_valid_key_is_401_and_counted_by_address(
    tmp_path: Path, key: str | None
) -> None:
    built, store = services(tmp_path)
    with pytest.raises(Unauthorized) as refused:
        admit(built, request(), key)
    assert refused.value.status == 401
    assert refused.value.messages == ("authorization: invalid or missing header value",)
    assert store.keys == [f"ip:{ADDRESS}"]
    assert rejected(built, "unauthorized") == 1
    assert rejected(built, "rate_limited") == 0


def test_a_caller_without_an_address_is_counted_as_unknown(tmp_path: Path) -> None:
    built, store = services(tmp_path)
    assert outcome(built, "sk-wrong", host=None) == "401"
    assert store.keys == ["ip:unknown"]


def test_refused_requests_count_toward_the_limit(tmp_path: Path) -> None:
    # README: "Every request to a model route counts, refused ones included." So the
    # limiter runs before the key check, and 401s use up the address's budget.
    built, _ = services(tmp_path, limit=3)
    outcomes = [outcome(built, "sk-wrong") for _ in range(5)]
    assert outcomes == ["401", "401", "401", "429", "429"]
    assert rejected(built, "unauthorized") == 3
    assert rejected(built, "rate_limited") == 2


def test_151_different_wrong_keys_are_limited_by_their_address(tmp_path: Path) -> None:
    # With the default limit: guessing keys cannot escape the limit by changing the key.
    defaults = Settings(cache_dir=tmp_path)
    built, store = services(tmp_path, limit=defaults.rate_limit_requests)
    outcomes = [outcome(built, f"sk-guess-{i}") for i in range(151)]
    assert outcomes == ["401"] * 150 + ["429"]
    assert set(store.keys) == {f"ip:{ADDRESS}"}
    # Another address is not affected.
    assert outcome(built, "sk-guess-151", host="198.51.100.1") == "401"


def test_a_valid_keys_budget_is_separate_from_its_address(tmp_path: Path) -> None:
    built, _ = services(tmp_path, limit=3)
    # Guessing from the address uses up the address's budget, never the real key's.
    assert [outcome(built, "sk-wrong") for _ in range(4)] == ["401", "401", "401", "429"]
    assert [outcome(built, KEY) for _ in range(4)] == ["ok", "ok", "ok", "429"]
    # ... and each valid key has its own budget.
    assert outcome(built, OTHER_KEY) == "ok"


def test_the_limit_is_checked_before_readiness_and_auth_before_readiness(
    tmp_path: Path,
) -> None:
    built, _ = services(tmp_path, limit=1, state="loading")
    assert outcome(built, KEY) == "503"
    assert outcome(built, KEY) == "429"
    assert outcome(built, "sk-wrong") == "401"


@pytest.mark.parametrize(
    ("state", "pipeline"),
    [("loading", PIPELINE), ("failed", PIPELINE), ("stopping", PIPELINE), ("ready", None)],
)
def test_a_server_that_is_not_ready_answers_503_with_retry_after_5(
    tmp_path: Path, state: str, pipeline: Pipeline | None
) -> None:
    built, _ = services(tmp_path, state=state, pipeline=pipeline)
    with pytest.raises(Unavailable) as refused:
        admit(built, request(), KEY)
    assert refused.value.status == 503
    assert refused.value.messages == ("server: the model is not loaded yet, please retry shortly",)
    assert refused.value.headers == {"retry-after": "5"}


def test_a_rate_limited_request_is_429_and_counted(tmp_path: Path) -> None:
    built, _ = services(tmp_path, limit=1)
    admit(built, request(), KEY)
    with pytest.raises(RateLimited) as refused:
        admit(built, request(), KEY)
    assert refused.value.status == 429
    assert refused.value.headers == {"retry-after": "60"}
    assert rejected(built, "rate_limited") == 1
    assert rejected(built, "unauthorized") == 0


def test_readiness_starts_as_loading_with_nothing_known() -> None:
    assert Readiness() == Readiness("loading", None, None, None)


def test_services_of_finds_the_apps_services(tmp_path: Path) -> None:
    built, _ = services(tmp_path)
    app = SimpleNamespace(state=SimpleNamespace(services=built))
    assert services_of(Request({"type": "http", "headers": [], "app": app})) is built


@pytest.mark.parametrize("key", [None, ""], ids=["none", "empty"])
def test_keyless_when_open_lets_a_caller_without_a_key_in_by_address(
    tmp_path: Path, key: str | None
) -> None:
    # OctoAI's route: octoai 1.11's infer() sends no Authorization header at all.
    built, store = services(tmp_path, limit=10)
    built.keyring = Keyring(frozenset())
    assert admit(built, request(), key, keyless_when_open=True) is PIPELINE
    assert store.keys == [f"ip:{ADDRESS}"]
    # Without the flag, or with keys configured, a missing key stays a 401.
    with pytest.raises(Unauthorized):
        admit(built, request(), key)
    built.keyring = Keyring(frozenset({KEY}))
    with pytest.raises(Unauthorized):
        admit(built, request(), key, keyless_when_open=True)
    with pytest.raises(Unauthorized):
        admit(built, request(), "sk-wrong", keyless_when_open=True)
    assert admit(built, request(), KEY, keyless_when_open=True) is PIPELINE
    assert store.keys[-1] == key_identity(KEY)
    assert rejected(built, "unauthorized") == 3


def test_keyless_when_open_still_counts_a_sent_key_as_itself(tmp_path: Path) -> None:
    built, store = services(tmp_path)
    built.keyring = Keyring(frozenset())
    assert admit(built, request(), "any-key", keyless_when_open=True) is PIPELINE
    assert store.keys == [key_identity("any-key"), f"ip:{ADDRESS}"]


def test_an_open_keyring_gives_each_address_a_budget_too(tmp_path: Path) -> None:
    # Any key is accepted: a fresh key per request must not escape the limit.
    built, _ = services(tmp_path, limit=3)
    built.keyring = Keyring(frozenset())
    for n in range(3):
        assert admit(built, request(), f"fresh-key-{n}") is PIPELINE
    with pytest.raises(RateLimited):
        admit(built, request(), "fresh-key-3")
    assert rejected(built, "rate_limited") == 1
    # Another address has its own budget.
    assert admit(built, request("198.51.100.1"), "fresh-key-4") is PIPELINE


def test_configured_keys_are_counted_by_key_alone(tmp_path: Path) -> None:
    # Several callers behind one address (a NAT) each keep their key's budget.
    built, store = services(tmp_path, limit=2)
    for key in (KEY, KEY, OTHER_KEY, OTHER_KEY):
        assert admit(built, request(), key) is PIPELINE
    assert f"ip:{ADDRESS}" not in store.keys


# --- per-key limits (the keys file) -----------------------------------------------------------


def limited(tmp_path: Path, limits: KeyLimits, limit: int = 3) -> Services:
    built, _ = services(tmp_path, limit=limit)
    built.keyring = Keyring(frozenset({KEY, OTHER_KEY}), {KEY: limits})
    return built


def test_a_keys_own_rate_replaces_the_default_for_that_key_only(tmp_path: Path) -> None:
    built = limited(tmp_path, KeyLimits(rate=Rate(5, 10)))
    assert [outcome(built, KEY) for _ in range(6)] == ["ok"] * 5 + ["429"]
    assert [outcome(built, OTHER_KEY) for _ in range(4)] == ["ok"] * 3 + ["429"]
    assert rejected(built, "rate_limited") == 2


def test_a_keys_concurrency_caps_its_requests_in_progress(tmp_path: Path) -> None:
    built = limited(tmp_path, KeyLimits(concurrency=2), limit=100)
    first, second, third = request(), request(), request()
    assert admit(built, first, KEY) is PIPELINE
    assert admit(built, second, KEY) is PIPELINE
    with pytest.raises(ConcurrencyLimited) as refused:
        admit(built, third, KEY)
    assert refused.value.status == 429
    assert refused.value.headers == {"retry-after": "1"}
    assert refused.value.messages == (
        "You have 2 requests in progress, the most this key may have at once; "
        "retry when one has finished.",
    )
    assert rejected(built, "concurrency") == 1
    assert rejected(built, "rate_limited") == 0
    # Each request noted the slot it holds, for SlotRelease to give back.
    assert first.scope["state"][HELD] == [key_identity(KEY)]
    assert third.scope["state"][HELD] == []
    assert built.slots.in_use(key_identity(KEY)) == 2
    built.slots.release(key_identity(KEY))
    assert admit(built, third, KEY) is PIPELINE
    # Another key has no cap; a refused (401) caller takes no slot.
    assert [outcome(built, OTHER_KEY) for _ in range(3)] == ["ok"] * 3
    assert built.slots.in_use(key_identity(OTHER_KEY)) == 0


def test_a_request_holds_one_slot_however_often_it_is_authorized(tmp_path: Path) -> None:
    built = limited(tmp_path, KeyLimits(concurrency=1), limit=100)
    one = request()
    assert admit(built, one, KEY) is PIPELINE
    assert admit(built, one, KEY) is PIPELINE
    assert one.scope["state"][HELD] == [key_identity(KEY)]
    assert built.slots.in_use(key_identity(KEY)) == 1


def test_a_concurrency_cap_without_the_release_middleware_is_a_programming_error(
    tmp_path: Path,
) -> None:
    built = limited(tmp_path, KeyLimits(concurrency=1))
    bare = Request({"type": "http", "headers": [], "client": (ADDRESS, 1)})
    with pytest.raises(RuntimeError, match="SlotRelease"):
        admit(built, bare, KEY)
    # Keys without a cap need no middleware.
    assert admit(built, bare, OTHER_KEY) is PIPELINE


# --- a store that cannot answer (Redis down) ------------------------------------------------


class DownStore(RecordingStore):
    async def take(self, key: str, limit: int, window_s: float, timeout_s: float) -> float | None:
        self.keys.append(key)
        raise StoreUnavailable("ConnectionError: refused")


def down(tmp_path: Path, failure: str) -> tuple[Services, DownStore]:
    built, _ = services(tmp_path)
    store = DownStore()
    built.limiter.store = store
    built.settings = Settings(cache_dir=tmp_path, rate_limit_failure=failure)  # type: ignore[arg-type]
    return built, store


def store_errors(built: Services) -> float:
    value = built.metrics.registry.get_sample_value("matte_rate_limit_store_errors_total")
    return value or 0.0


def test_fail_open_lets_requests_through_and_counts_each(tmp_path: Path) -> None:
    built, store = down(tmp_path, "open")
    assert [outcome(built, KEY) for _ in range(5)] == ["ok"] * 5  # past the limit of 3
    assert outcome(built, "sk-wrong") == "401"  # the key is still checked
    assert store_errors(built) == 6
    assert rejected(built, "rate_limited") == 0
    # An open keyring counts key and address: one error per request, not per name.
    built.keyring = Keyring(frozenset())
    store.keys.clear()
    assert outcome(built, "any-key") == "ok"
    assert store_errors(built) == 7
    assert store.keys == [key_identity("any-key")]


def test_fail_closed_answers_503_with_retry_after(tmp_path: Path) -> None:
    built, _ = down(tmp_path, "closed")
    with pytest.raises(Unavailable) as refused:
        admit(built, request(), KEY)
    assert refused.value.status == 503
    assert refused.value.headers == {"retry-after": "1"}
    assert refused.value.messages == (
        "server: the rate limit cannot be checked right now, please retry shortly",
    )
    assert outcome(built, "sk-wrong") == "503"  # before the key: nothing is let in
    assert store_errors(built) == 2
    assert rejected(built, "rate_limit_unavailable") == 2
    assert rejected(built, "unauthorized") == 0
