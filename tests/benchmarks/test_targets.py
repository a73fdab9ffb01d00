"""Issue 12's target verdicts and AMX arithmetic (benchmarks/targets.py, and the table
report.py builds from a run), on figures made up here: no server, no model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.benchmark_scripts import benchmark_scripts


@pytest.fixture(scope="module")
def bench() -> Iterator[tuple[Any, ...]]:
    with benchmark_scripts("targets", "report", "load", "model_limit") as modules:
        yield modules


@pytest.fixture(scope="module")
def targets(bench: tuple[Any, ...]) -> Any:
    return bench[0]


def test_verdicts_take_the_bound_on_the_right_side(targets: Any) -> None:
    assert targets.verdict(5.0, 5.0) == "yes" and targets.verdict(4.99, 5.0) == "no"
    assert targets.verdict(0.4, 0.4, at_most=True) == "yes"
    assert targets.verdict(0.41, 0.4, at_most=True) == "no"
    assert targets.verdict(float("nan"), 1.0) == "n/a"


def test_a_noisy_run_is_judged_by_cpu_time(targets: Any) -> None:
    quiet = targets.throughput("t", 5.2, 4.0, 0.1, 5.0, 0.2)
    assert quiet.ratio == 5.2 and quiet.met == "yes (wall clock)"
    noisy = targets.throughput("t", 5.2, 4.0, 0.5, 5.0, 0.2)
    assert noisy.ratio == 4.0 and noisy.met.startswith("no (by CPU time")


def test_amx_arithmetic_swaps_the_model_part_only(targets: Any) -> None:
    # 0.9 s here, 0.6 of it the model: 0.3 + 0.214 on AMX.
    assert targets.amx_seconds(0.9, 0.6) == pytest.approx(0.514)
    # CPU s/image 1.5 with 1.2 in the model: 0.3 + 0.38 = 0.68 on AMX.
    assert targets.amx_limit_ratio(1.5, 1.2) == pytest.approx(0.38 / 0.68)
    # Matte 2 / 0.68 images/s; rembg 0.5 images/s sped up 2.2 / 1.1 = 2x.
    assert targets.amx_peer_ratio(1.5, 1.2, 2, 0.5, 2.2) == pytest.approx((2 / 0.68) / 1.0)
    assert targets.amx_webp_ratio(1.0, 1.5, 0.6) == pytest.approx(1.114 / 0.614)


def test_lone_latency_and_webp_verdicts(targets: Any) -> None:
    lone = targets.lone_latency(0.9, 0.6, amx_here=False)
    assert lone.met == "no" and lone.amx.endswith("= 0.514 s: no")
    assert targets.lone_latency(0.39, 0.2, amx_here=True).met == "yes"
    assert targets.lone_latency(0.39, 0.2, amx_here=True).amx == ""
    webp = targets.webp(1.0, 1.25, 0.6, amx_here=False)
    assert webp.ratio == pytest.approx(1.25) and webp.met == "yes"
    assert webp.amx.endswith("1.41x: no")  # 0.864 / 0.614: the encode weighs more on AMX
    assert targets.webp(1.0, 1.31, None, amx_here=False).met == "no"


def test_rss_needs_both_the_bound_and_flatness(targets: Any) -> None:
    assert targets.rss(1400, 1300, 1350, True).met == "yes"
    assert targets.rss(1431, 1300, 1350, True).met == "no"  # 1.5 GB is 1430.5 MiB
    assert targets.rss(1400, 1100, 1400, False).met == "no"


def test_fp32_openvino_must_not_be_slower(targets: Any) -> None:
    assert targets.fp32(2.7, 2.6).met == "yes" and targets.fp32(2.6, 2.7).met == "no"
    assert targets.fp32(2.6, 2.6).ratio == 1.0


def _load(
    load: Any,
    concurrency: int,
    seconds: float,
    cpu_s: float,
    latency: float,
    rss_kib: int = 1_000_000,
) -> Any:
    samples = [load.Sample(i * latency, (i + 1) * latency, 200, 0, rss_kib) for i in range(4)]
    curve = [((i + 1) * latency, rss_kib) for i in range(4)]
    return load.LoadResult(concurrency, samples, seconds, rss_kib, cpu_s, 0.0, curve)


def _report(bench: tuple[Any, ...], *, rembg_rate: float, lone_s: float) -> str:
    _targets, report, load, model_limit = bench
    layout = model_limit.Layout(1, 2)
    # Model limit: 4 images in 4 s (1 image/s), 1.0 CPU s/image, OpenVINO bf16.
    limit = model_limit.LimitResult(layout, 1, "cpu", 4, 4.0, 4.0, 0.0, "openvino", "bf16")
    runs = [
        # Matte, 4 MP, c=4: 4 images in 5 s (0.8 images/s), 1.25 CPU s/image.
        report.E2ERun("matte", 4, _load(load, 4, 5.0, 5.0, 1.0)),
        report.E2ERun("rembg-original", 4, _load(load, 4, 4.0 / rembg_rate, 8.0, 1.0)),
        report.E2ERun("matte", 4, _load(load, 1, 4.0, 4.0, lone_s)),
    ]
    made_up = report.Report(
        command="x",
        date="d",
        provider="cpu",
        settings={},
        limits=[limit],
        runs=runs,
        cpu_flags=["avx2", "avx512_bf16"],
        served="openvino bf16",
        engine_runs=[
            report.EngineRun("onnxruntime", "fp32", 2.0, ""),
            report.EngineRun("openvino", "fp32", 1.9, ""),
            report.EngineRun("openvino", "bf16", 0.8, ""),
        ],
    )
    text: str = report.render(made_up)
    return text.split("## Targets (issue 12)", 1)[1]


def _rows(section: str) -> dict[str, list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    return {row[0].split(":")[0]: row for row in cells}


def test_the_issue_table_judges_a_run(bench: tuple[Any, ...]) -> None:
    rows = _rows(_report(bench, rembg_rate=0.16, lone_s=0.5))
    rembg = rows["4 MP PNG, c=4"]  # 0.8 / 0.16 = 5.0x: met, exactly
    assert rembg[2] == "5.00" and rembg[3] == "yes (wall clock)"
    limit = rows["4 MP, c=4"]  # 0.8 images/s against 1.0: below 0.75? no, above
    assert limit[2] == "0.80" and limit[3] == "yes (wall clock)"
    assert limit[4] == f"{0.38 / (1.25 - 1.0 + 0.38):.2f}x"  # on AMX: 0.60x
    lone = rows["a lone 4 MP request"]
    assert lone[1] == "p50 0.500 s" and lone[3] == "no"
    assert lone[4].endswith(f"= {0.5 - 0.8 + 0.214:.3f} s: yes")
    fp32 = rows["fp32 (exact)"]
    assert fp32[2] == f"{2.0 / 1.9:.2f}" and fp32[3] == "yes"
    assert "This CPU has no AMX" in _report(bench, rembg_rate=0.16, lone_s=0.5)


def test_the_issue_table_fails_a_slow_run(bench: tuple[Any, ...]) -> None:
    rows = _rows(_report(bench, rembg_rate=0.2, lone_s=0.3))
    assert rows["4 MP PNG, c=4"][2] == "4.00" and rows["4 MP PNG, c=4"][3] == "no (wall clock)"
    assert rows["a lone 4 MP request"][3] == "yes"
