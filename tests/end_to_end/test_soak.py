"""The soak, short enough for CI: a real server process on the real model, steady
concurrency with the real photos at about 1 MP (benchmarks/soak.py, which runs longer
ones by hand): no error responses, RSS flat, p99 steady."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.benchmark_scripts import benchmark_scripts
from tests.conftest import KEY, fixture_photos
from tests.end_to_end.server_process import served

# Model load, a warm-up and two minutes of load on a shared 2-core machine.
pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]

CONCURRENCY = 3
REQUESTS = 150  # at most; on 2 cores the time bound ends it first (~0.4-1 images/s)
DURATION_S = 120.0
WARM_UP = 2 * CONCURRENCY  # not counted: the first runs settle the allocator's pools


@pytest.fixture(scope="module")
def soak() -> Iterator[ModuleType]:
    with benchmark_scripts("soak") as (module,):
        yield module


def test_a_steady_load_keeps_memory_and_latency_flat(soak: ModuleType) -> None:
    photos = [soak.photo_jpeg(photo) for photo in fixture_photos()]
    with served({"MATTE_RATE_LIMIT_REQUESTS": "1000000"}) as server:
        targets = soak.endpoints(server.url, KEY, photos)
        result = soak.soak(targets, server.pid, CONCURRENCY, REQUESTS, DURATION_S, WARM_UP)
    print(result.summary())
    # Enough requests for the halves to mean something, and every one answered 200.
    assert len(result.replies) >= 30, result.summary()
    assert result.errors == 0, result.summary()
    # RSS within 10% of its value after the warm-up (both read with the server idle).
    assert abs(result.rss_growth) <= soak.RSS_GROWTH, result.summary()
    # No slow drift or build-up: the second half's p90 at most 1.5x the first half's,
    # and its p99 (here about its slowest reply) at most 2x.
    assert result.p90_ratio <= soak.P90_RATIO, result.summary()
    assert result.p99_ratio <= soak.P99_RATIO, result.summary()
