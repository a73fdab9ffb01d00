"""MATTE_REDIS_URL over HTTP, with Redis killed mid-run and started again: fail-open keeps
answering (counted, logged once), fail-closed answers 503; once Redis is back the limit
applies again without restarting Matte."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import RateLimitFailure, Settings
from tests.conftest import assert_error, post, wait_ready
from tests.fakes import BrightnessEngine
from tests.redis_server import RedisServer, redis_instance

RETRY_S = 1.1  # past the store's one second between tries


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_instance() as server:
        yield server


def client_for(tmp_path: Path, redis: RedisServer, failure: RateLimitFailure) -> TestClient:
    settings = Settings(
        cache_dir=tmp_path,
        api_keys=frozenset({"sk-test-key"}),
        rate_limit_requests=3,
        redis_url=redis.url,
        rate_limit_failure=failure,
    )
    return TestClient(
        create_app(settings, engine=BrightnessEngine()), raise_server_exceptions=False
    )


def sample(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("rate limit store")]


def test_fail_open_survives_a_redis_crash_and_limits_again_once_it_is_back(
    tmp_path: Path, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="matte")
    with client_for(tmp_path, redis, "open") as client:
        wait_ready(client)
        assert [post(client).status_code for _ in range(2)] == [400, 400]  # counted in Redis
        redis.kill()
        # Past the limit of 3, and nothing refused: the limiter is out of the way.
        assert [post(client).status_code for _ in range(6)] == [400] * 6
        assert sample(client, "matte_rate_limit_store_errors_total") == 6
        assert sample(client, "matte_rejected_total") == 0
        redis.start()  # empty: it kept nothing
        time.sleep(RETRY_S)
        assert [post(client).status_code for _ in range(4)] == [400, 400, 400, 429]
        assert sample(client, "matte_rate_limit_store_errors_total") == 6
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("rate limit store: Redis is unreachable (ConnectionError: ")
    assert lines[1] == "rate limit store: Redis is reachable again; limits apply again"


def test_fail_closed_answers_503_while_redis_is_down(
    tmp_path: Path, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="matte")
    with client_for(tmp_path, redis, "closed") as client:
        wait_ready(client)
        assert post(client).status_code == 400
        redis.kill()
        for _ in range(3):
            response = post(client)
            assert_error(
                response,
                503,
                "service_unavailable",
                "server: the rate limit cannot be checked right now, please retry shortly",
            )
            assert response.headers["retry-after"] == "1"
        # Other dialects answer in their own shape.
        omixa = client.post(
            "/api/v1/images/generations", headers={"authorization": "Bearer sk-test-key"}
        )
        assert omixa.status_code == 503 and omixa.headers["retry-after"] == "1"
        assert omixa.json()["error"]["code"] == "service_unavailable"
        metrics = client.get("/metrics").text
        assert 'matte_rejected_total{reason="rate_limit_unavailable"} 4.0' in metrics
        assert sample(client, "matte_rate_limit_store_errors_total") == 4
        redis.start()
        time.sleep(RETRY_S)
        assert [post(client).status_code for _ in range(4)] == [400, 400, 400, 429]
    assert len(outage_lines(caplog)) == 2
