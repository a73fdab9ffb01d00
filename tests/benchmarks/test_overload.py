"""benchmarks/overload.py's verdict, on answers made up here (no server, no model)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.benchmark_scripts import benchmark_scripts


@pytest.fixture(scope="module")
def overload() -> Iterator[Any]:
    with benchmark_scripts("overload") as (module,):
        yield module


def answers(overload: Any, *spec: tuple[int, float, bool, bool]) -> list[object]:
    return [overload.Answer(*item) for item in spec]


def result(overload: Any, spec: list[tuple[int, float, bool, bool]]) -> Any:
    # Two slots plus two in line: a burst of six must see at least two refused.
    return overload.OverloadResult(1, 2, 2, answers(overload, *spec))


OK = (200, 2.0, False, True)
FAST_503 = (503, 0.01, True, True)


def test_the_surplus_refused_at_once_and_well_formed_meets_the_target(
    overload: Any,
) -> None:
    probe = result(overload, [OK] * 4 + [FAST_503] * 2)
    assert probe.expected_refused == 2 and len(probe.refused_at_once) == 2
    assert probe.timed_out == 0 and probe.other == 0 and probe.met


@pytest.mark.parametrize(
    ("surplus", "why"),
    [
        ((503, 1.5, True, True), "a 503 after a second is late, not at once"),
        ((503, 1.0, True, True), "the bound is strict"),
        ((503, 0.01, False, True), "a 503 without Retry-After"),
        ((503, 0.01, True, False), "a 503 without the API's error body"),
        ((200, 2.0, False, True), "the surplus was served: nothing refused it"),
    ],
)
def test_a_surplus_not_refused_at_once_in_shape_fails_the_target(
    overload: Any, surplus: tuple[int, float, bool, bool], why: str
) -> None:
    probe = result(overload, [OK] * 4 + [FAST_503, surplus])
    assert not probe.met, why


def test_late_503s_are_counted_apart_and_do_not_count_as_refused_at_once(
    overload: Any,
) -> None:
    late = (503, 31.0, True, True)  # waited out MATTE_QUEUE_TIMEOUT_S in line
    probe = result(overload, [OK] * 3 + [late] + [FAST_503] * 2)
    assert probe.timed_out == 1 and len(probe.refused_at_once) == 2 and probe.met
    assert probe.refused_latency(100) == pytest.approx(0.01)


def test_a_burst_within_the_bounds_cannot_meet_the_target(overload: Any) -> None:
    # Nothing needed refusing, so the probe proved nothing.
    probe = result(overload, [OK] * 4)
    assert probe.expected_refused == 0 and not probe.met


def test_connection_failures_count_as_other(overload: Any) -> None:
    probe = result(overload, [OK] * 4 + [FAST_503, (0, 0.5, False, False)])
    assert probe.other == 1 and probe.ok == 4 and len(probe.refused) == 1
