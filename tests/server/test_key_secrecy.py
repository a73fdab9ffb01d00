"""No key text ever leaves the server: good and bad keys through every dialect, past
the rate limit and a key's concurrency cap, with the limiter's store working or down;
none of them appears in a response (body or headers), in /metrics or in the log."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.key_limits import KeyLimits, Rate
from server.settings import RateLimitFailure, Settings
from tests.conftest import PATH, jpeg, wait_ready
from tests.fakes import BrightnessEngine
from tests.redis_server import redis_instance

GOOD = "sk-GoodSecret-0c6f1e"
LIMITED = "live_LimitedSecret-77ab"
BAD = "sk-BadGuess-9d2e44"
KEYS = (GOOD, LIMITED, BAD)
DATA_URL = "data:image/jpeg;base64," + base64.b64encode(jpeg()).decode()

Send = Callable[[TestClient, str], httpx.Response]


def json_post(path: str, body: Callable[[str], dict[str, object]], bearer: bool) -> Send:
    def send(client: TestClient, key: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if bearer else {}
        response: httpx.Response = client.post(path, headers=headers, json=body(key))
        return response

    return send


ROUTES: dict[str, Send] = {
    "stability": lambda client, key: client.post(
        PATH,
        headers={"authorization": f"Bearer {key}"},
        files={"image": ("a.jpg", jpeg(), "image/jpeg")},
    ),
    "stability-bare": lambda client, key: client.post(PATH, headers={"authorization": key}),
    "omixa": json_post(
        "/api/v1/images/generations",
        lambda key: {
            "model": "stability-remove-background",
            "prompt": "",
            "input_images": [{"type": "image_url", "image_url": {"url": DATA_URL}}],
        },
        bearer=True,
    ),
    "octoai": json_post("/background-removal", lambda key: {"init_image": DATA_URL}, True),
    "modelslab": json_post(
        "/api/v6/image_editing/removebg_mask", lambda key: {"key": key, "image": DATA_URL}, False
    ),
    "modelslab-fetch": json_post("/api/v6/fetch/1", lambda key: {"key": key}, False),
    "imgproc-list": lambda client, key: client.get("/v1/images", headers={"x-api-key": key}),
    "imgproc-upload": lambda client, key: client.post(
        "/v1/images/upload",
        headers={"x-api-key": key},
        files={"image": ("a.jpg", jpeg(), "image/jpeg")},
        data={"name": "photo"},
    ),
}


def leaks(text: str) -> list[str]:
    found = []
    for key in KEYS:
        digest = hashlib.sha256(key.encode()).hexdigest()
        # The key, any long piece of it, or the identity the limiter stores.
        for secret in (key, key[3:], key[-12:], digest[:32]):
            if secret in text:
                found.append(secret)
    return found


def exercise(tmp_path: Path, caplog: pytest.LogCaptureFixture, **changes: object) -> set[int]:
    """Every route with every key, three times over; the statuses seen."""
    settings = Settings(
        cache_dir=tmp_path,
        api_keys=frozenset({GOOD, LIMITED}),
        key_limits={LIMITED: KeyLimits(rate=Rate(4, 10), concurrency=1)},
        rate_limit_requests=10,
        **changes,  # type: ignore[arg-type]
    )
    caplog.set_level(logging.DEBUG)
    answers: list[httpx.Response] = []
    with TestClient(
        create_app(settings, engine=BrightnessEngine()), raise_server_exceptions=False
    ) as client:
        wait_ready(client)
        # Enough rounds to pass every budget: 401s, then 429s for each key and address.
        for _ in range(3):
            for send in ROUTES.values():
                for key in KEYS:
                    answers.append(send(client, key))
        metrics = client.get("/metrics").text
    statuses = {answer.status_code for answer in answers}
    for answer in answers:
        shown = answer.text + "".join(f"{n}: {v}\n" for n, v in answer.headers.items())
        assert leaks(shown) == [], (answer.request.url, answer.status_code)
    assert leaks(metrics) == []
    assert leaks(caplog.text) == []
    for record in caplog.records:
        assert leaks(record.getMessage()) == [], record.name
    return statuses


def test_no_key_leaves_the_server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    statuses = exercise(tmp_path, caplog)
    # Successes, refusals of bad keys, rate limits and the concurrency cap all ran.
    assert {200, 201, 401, 429} <= statuses, statuses


@pytest.mark.parametrize("failure", ["open", "closed"])
def test_no_key_leaves_the_server_while_redis_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, failure: RateLimitFailure
) -> None:
    with redis_instance() as server:
        url = server.url
    # Nothing listens there now: every check fails (open lets in, closed 503s).
    statuses = exercise(tmp_path, caplog, redis_url=url, rate_limit_failure=failure)
    assert "rate limit store: Redis is unreachable" in caplog.text
    if failure == "open":
        assert {200, 201, 401} <= statuses and 503 not in statuses, statuses
    else:
        assert statuses == {503}
