"""benchmarks/soak.py's verdict, on replies made up here (no server, no model)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.benchmark_scripts import benchmark_scripts


@pytest.fixture(scope="module")
def soak() -> Iterator[ModuleType]:
    with benchmark_scripts("soak") as (module,):
        yield module


def result(soak: ModuleType, first: list[float], second: list[float], rss_end: int = 1000) -> Any:
    replies = [soak.Reply(i, latency, 200) for i, latency in enumerate(first + second)]
    return soak.SoakResult(3, replies, 60.0, 1000, rss_end, 1100)


def test_a_steady_run_is_met_even_with_one_slow_reply_late(soak: ModuleType) -> None:
    # 75 replies a half, as in CI: the second half's slowest is 1.6x the first's.
    run = result(soak, [1.0] * 74 + [1.5], [1.0] * 74 + [2.4])
    assert run.p99_ratio > 1.5 and run.met


def test_a_drift_in_the_body_of_the_latencies_is_not_met(soak: ModuleType) -> None:
    run = result(soak, [1.0] * 75, [1.0] * 60 + [1.6] * 15)
    assert run.p90_ratio == pytest.approx(1.6) and not run.met


def test_a_tail_that_grows_past_twice_is_not_met(soak: ModuleType) -> None:
    run = result(soak, [1.0] * 74 + [1.5], [1.0] * 74 + [3.1])
    assert run.p90_ratio == pytest.approx(1.0) and not run.met


def test_rss_growth_past_ten_percent_is_not_met(soak: ModuleType) -> None:
    assert result(soak, [1.0] * 10, [1.0] * 10, rss_end=1099).met
    assert not result(soak, [1.0] * 10, [1.0] * 10, rss_end=1101).met
