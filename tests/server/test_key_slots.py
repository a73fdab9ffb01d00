"""key_slots.py and the keys file's limits over HTTP: a key's requests in progress are
capped, every slot comes back whatever the request ends in, and a key's own rate applies."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from starlette.requests import Request
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from server.app import create_app
from server.key_limits import KeyLimits, Rate
from server.key_slots import HELD, KeySlots, SlotRelease
from server.keyring import Keyring
from server.settings import Settings
from tests.conftest import KEY, jpeg, post, wait_ready
from tests.fakes import BrightnessEngine

OTHER_KEY = "sk-other-key"
IDENTITY = Keyring.identity(KEY)


# --- the middleware ---------------------------------------------------------------------------


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def _send(message: Message) -> None:
    return None


def run_through(slots: KeySlots, ending: str) -> list[str]:
    """A request that takes a slot and then ends as `ending`; what it held."""
    seen: list[str] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        slots.hold(Request(scope), IDENTITY, 2)
        seen.extend(scope["state"][HELD])
        assert slots.in_use(IDENTITY) == 1
        if ending == "error":
            raise RuntimeError("the endpoint failed")
        if ending == "cancelled":
            raise asyncio.CancelledError
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def main() -> None:
        app = SlotRelease(endpoint, slots)
        await app({"type": "http", "headers": []}, _receive, _send)

    if ending == "answered":
        asyncio.run(main())
    else:
        with pytest.raises((RuntimeError, asyncio.CancelledError)):
            asyncio.run(main())
    return seen


@pytest.mark.parametrize("ending", ["answered", "error", "cancelled"])
def test_the_middleware_gives_back_what_the_request_took(ending: str) -> None:
    slots = KeySlots()
    assert run_through(slots, ending) == [IDENTITY]
    assert slots.in_use(IDENTITY) == 0
    assert slots._in_use == {}  # nothing stays behind for an idle key


def test_slots_are_counted_per_identity() -> None:
    slots = KeySlots()
    scope: Scope = {"type": "http", "headers": [], "state": {HELD: []}}
    other: Scope = {"type": "http", "headers": [], "state": {HELD: []}}
    slots.hold(Request(scope), IDENTITY, 2)
    slots.hold(Request(other), IDENTITY, 2)
    slots.hold(Request(other), "key:other", 1)
    assert slots.in_use(IDENTITY) == 2 and slots.in_use("key:other") == 1
    slots.release(IDENTITY)
    assert slots.in_use(IDENTITY) == 1


def test_other_scopes_pass_through_untouched() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    asyncio.run(SlotRelease(app, KeySlots())({"type": "lifespan"}, _receive, _send))
    assert seen == [{"type": "lifespan"}]


# --- over HTTP --------------------------------------------------------------------------------


class GatedEngine(BrightnessEngine):
    """Holds every request's model run until the test opens the gate (the warm-up,
    an all-zero input, passes at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.any():
            self.entered.set()
            assert self.gate.wait(timeout=30), "the test never opened the gate"
        return super().run(batch)


@contextlib.contextmanager
def limited_client(
    tmp_path: Path, engine: BrightnessEngine, limits: KeyLimits
) -> Iterator[TestClient]:
    settings = Settings(
        cache_dir=tmp_path, api_keys=frozenset({KEY, OTHER_KEY}), key_limits={KEY: limits}
    )
    with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def test_a_key_over_its_concurrency_gets_429_until_one_finishes(tmp_path: Path) -> None:
    engine = GatedEngine()
    first: list[httpx.Response] = []
    with limited_client(tmp_path, engine, KeyLimits(concurrency=1)) as client:
        worker = threading.Thread(target=lambda: first.append(post(client, jpeg())))
        worker.start()
        try:
            assert engine.entered.wait(timeout=30)
            refused = post(client, jpeg())
            # Stability's own 429 shape (its id is fixed), as for the rate limit.
            assert refused.status_code == 429
            assert refused.json() == {
                "id": "rate_limit_exceeded",
                "name": "rate_limit_exceeded",
                "errors": [
                    "You have 1 requests in progress, the most this key may have at once; "
                    "retry when one has finished."
                ],
            }
            assert refused.headers["retry-after"] == "1"
            # The cap is the key's alone.
            assert post(client, headers={"authorization": f"Bearer {OTHER_KEY}"}).status_code == 400
        finally:
            engine.gate.set()
            worker.join(timeout=30)
        assert [response.status_code for response in first] == [200]
        assert post(client, jpeg()).status_code == 200  # its slot came back
        metrics = client.get("/metrics").text
        assert 'matte_rejected_total{reason="concurrency"} 1.0' in metrics


def test_every_ending_gives_the_slot_back(tmp_path: Path) -> None:
    # Concurrency 1: had any of these kept its slot, the next request would be 429.
    with limited_client(tmp_path, BrightnessEngine(), KeyLimits(concurrency=1)) as client:
        assert post(client).status_code == 400  # no image
        assert post(client, b"not an image").status_code == 400
        assert post(client, jpeg(), {"accept": "text/html"}).status_code == 400
        assert client.post("/v1/images/upload", headers={"x-api-key": KEY}).status_code == 400
        assert post(client, jpeg()).status_code == 200
        assert post(client, jpeg()).status_code == 200


def test_a_keys_own_rate_applies_over_http(tmp_path: Path) -> None:
    with limited_client(tmp_path, BrightnessEngine(), KeyLimits(rate=Rate(5, 2.0))) as client:
        assert [post(client).status_code for _ in range(5)] == [400] * 5
        refused = post(client)
        assert refused.status_code == 429
        assert refused.json()["errors"] == [
            "You have exceeded the rate limit of 5 requests within a 2 second period, "
            "and have been timed out for 60 seconds."
        ]
        other = {"authorization": f"Bearer {OTHER_KEY}"}
        assert [post(client, headers=other).status_code for _ in range(6)] == [400] * 6
