"""benchmarks/gpu.py, issue 16's GPU check, tested where CI runs: on the CPU.

The whole check runs once in its --cpu mode (every phase, tiny counts, the real
model and real server processes); the verdicts, the GPU sampler's arithmetic and
the staging for the GPU machine are checked on made-up inputs, so a wrong verdict
or a part that would not join fails here rather than on a machine lent for minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.benchmark_scripts import script_env
from tests.conftest import FIXTURES, ROOT

BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def bench() -> Iterator[Any]:
    # The harness is a script directory whose modules import each other by bare name.
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu  # type: ignore[import-not-found]
        import gpu_meter  # type: ignore[import-not-found]
        import gpu_report  # type: ignore[import-not-found]
        import gpu_stage  # type: ignore[import-not-found]
        import gpu_variants  # type: ignore[import-not-found]
        import load  # type: ignore[import-not-found]

        yield SimpleNamespace(
            gpu=gpu,
            meter=gpu_meter,
            report=gpu_report,
            stage=gpu_stage,
            variants=gpu_variants,
            load=load,
        )
    finally:
        sys.path.remove(str(BENCHMARKS))


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the table under `## {heading}`, as lists of cell texts."""
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


# --- the whole check on the CPU -------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("gpu-check")
    env = script_env()
    command = [
        sys.executable,
        "benchmarks/gpu.py",
        "--cpu",
        "--out",
        str(out),
        "--fixtures",
        str(FIXTURES),
        "--budget-s",
        "240",
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    markdown = (out / "gpu-results.md").read_text()
    return markdown, json.loads((out / "gpu-results.json").read_text())


@pytest.mark.model
def test_every_phase_ran_or_says_why_not(bench: Any, cpu_run: tuple[str, dict[str, Any]]) -> None:
    markdown, data = cpu_run
    phases = {row[0]: row[1] for row in table_rows(markdown, "Phases")}
    assert list(phases) == list(bench.report.PHASES)
    for name in ("environment", "fidelity", "model limit", "matte end to end", "rembg path"):
        assert phases[name].startswith("done in "), (name, phases[name])
    for name in ("cuda graphs", "tensorrt"):
        assert phases[name] == f"skipped: {name} needs the CUDA provider (this run: cpu)"
    assert data["phases"] == phases
    for heading in (
        "Environment",
        "Fidelity",
        "Model limit",
        "End to end",
        "Matte's stages",
        "CUDA graphs and TensorRT",
        "Targets",
    ):
        assert f"\n## {heading}\n" in markdown


@pytest.mark.model
def test_the_cpu_run_measured_each_phase(cpu_run: tuple[str, dict[str, Any]]) -> None:
    markdown, data = cpu_run
    environment = {row[0]: row[1] for row in table_rows(markdown, "Environment")}
    assert environment["GPU"].startswith("none") and " cores, " in environment["CPU"]
    assert "CPUExecutionProvider" in environment["providers available"]
    assert [(row["photo"], row["iou"] >= 0.995) for row in data["fidelity"]] == [("car-1", True)]
    [limit] = data["limits"]
    assert limit["batch"] == 1 and limit["images_per_s"] > 0
    runs = [
        (row["server"], row["megapixels"], row["concurrency"], row["requests"], row["ok"])
        for row in data["e2e"]
    ]
    assert runs == [
        ("matte", 1, 1, 1, 1),
        ("matte", 1, 2, 2, 2),
        ("rembg path", 1, 1, 1, 1),
        ("rembg path", 1, 2, 2, 2),
    ]
    assert all(row["p50_s"] > 0 and row["server_cores"] > 0 for row in data["e2e"])
    assert all(row["stages"]["predict"] > 0 for row in data["e2e"] if row["server"] == "matte")


@pytest.mark.model
def test_the_targets_follow_from_the_tables(cpu_run: tuple[str, dict[str, Any]]) -> None:
    markdown, data = cpu_run
    targets = {row[0]: row for row in table_rows(markdown, "Targets")}
    assert list(targets) == [
        "fidelity: soft IoU against rembg's references",
        "end to end 1 MP c=2 vs the batched model limit",
        "end to end 1 MP c=2 vs rembg's request path",
        "a lone 1 MP request (c=1, p50)",
        "CPU not the bottleneck (1 MP c=2)",
    ]
    matte = next(r for r in data["e2e"] if r["server"] == "matte" and r["concurrency"] == 2)
    rembg = next(r for r in data["e2e"] if r["server"] == "rembg path" and r["concurrency"] == 2)
    to_rembg = matte["images_per_s"] / rembg["images_per_s"]
    row = targets["end to end 1 MP c=2 vs rembg's request path"]
    assert row[2].startswith(f"{to_rembg:.2f}x") and row[3] == ("yes" if to_rembg >= 5 else "no")
    assert [t["verdict"] for t in data["targets"]] == [row[3] for row in targets.values()]


# --- verdicts on made-up figures ------------------------------------------------------------


def results(bench: Any, **figures: float) -> Any:
    """A full GPU run's results: limit 100 images/s at batch 8, Matte at c=64 `matte`
    images/s, rembg's path `rembg`, a lone request of `lone_s`, `cores` server cores."""
    report = bench.report
    made = report.Results("gpu.py", "today", "cuda", False, 520.0, 16)
    made.fidelity = [
        report.FidelityRow("car-1", figures.get("iou", 0.999)),
        report.FidelityRow("cloth-1", 0.998),
    ]
    made.limits = [report.LimitRow(1, 40.0, 0.025, 0.01), report.LimitRow(8, 100.0, 0.08, 0.01)]

    def row(
        server: str, concurrency: int, rate: float, p50_s: float = 0.5, cores: float = 4.0
    ) -> Any:
        return report.E2ERow(server, 1, concurrency, 64, 64, 0, rate, p50_s, p50_s, cores, 900.0)

    made.e2e = [
        row("matte", 1, 20.0, p50_s=figures.get("lone_s", 0.045)),
        row("matte", 16, 500.0),  # faster than the c=64 row: the targets must not pick it
        row("matte", 64, figures.get("matte", 80.0), cores=figures.get("cores", 8.0)),
        row("rembg path", 64, figures.get("rembg", 10.0)),
    ]
    return made


def verdicts(bench: Any, **figures: float) -> dict[str, str]:
    return {t.name: t.verdict for t in bench.report.evaluate(results(bench, **figures))}


LIMIT = "end to end 1 MP c=64 vs the batched model limit"
REMBG = "end to end 1 MP c=64 vs rembg's request path"
LONE = "a lone 1 MP request (c=1, p50)"
CPU = "CPU not the bottleneck (1 MP c=64)"
FIDELITY = "fidelity: soft IoU against rembg's references"


def test_every_target_met_on_good_figures(bench: Any) -> None:
    assert verdicts(bench) == dict.fromkeys([FIDELITY, LIMIT, REMBG, LONE, CPU], "yes")


@pytest.mark.parametrize(
    ("figures", "target", "verdict"),
    [
        ({"matte": 70.0}, LIMIT, "yes"),  # exactly 0.7x the best batch (100), not batch 1's 40
        ({"matte": 69.9}, LIMIT, "no"),
        ({"matte": 80.0, "rembg": 16.0}, REMBG, "yes"),  # exactly 5x
        ({"matte": 80.0, "rembg": 16.1}, REMBG, "no"),
        ({"lone_s": 0.0599}, LONE, "yes"),
        ({"lone_s": 0.060}, LONE, "no"),  # strictly under 60 ms
        ({"cores": 14.3}, CPU, "yes"),  # 89% of 16 cores
        ({"cores": 14.4}, CPU, "no"),  # 90%: the CPU stages are the bottleneck
        ({"iou": 0.995}, FIDELITY, "yes"),
        ({"iou": 0.9949}, FIDELITY, "no"),  # the lowest photo decides
    ],
)
def test_each_verdict_at_its_boundary(
    bench: Any, figures: dict[str, float], target: str, verdict: str
) -> None:
    assert verdicts(bench, **figures)[target] == verdict


def test_a_target_without_its_figures_is_not_measured_rather_than_met(bench: Any) -> None:
    made = results(bench)
    made.e2e = [row for row in made.e2e if row.server == "matte"]  # rembg's path never ran
    made.limits = []
    made.fidelity = []
    found = {t.name: t for t in bench.report.evaluate(made)}
    for name in (LIMIT, REMBG, FIDELITY):
        assert found[name].verdict == "not measured" and found[name].measured == "n/a"
    assert found[LONE].verdict == "yes"
    empty = bench.report.Results("gpu.py", "today", "cuda", False, 520.0, 16)
    assert {t.verdict for t in bench.report.evaluate(empty)} == {"not measured"}


def test_ratios_are_printed_with_both_figures(bench: Any) -> None:
    found = {t.name: t for t in bench.report.evaluate(results(bench, matte=80.0, rembg=10.0))}
    assert found[LIMIT].measured == "0.80x (80.0 / 100.0 images/s)"
    assert found[REMBG].measured == "8.00x (80.0 / 10.0 images/s)"
    assert bench.report.ratio(1.0, 0.0) is None and bench.report.ratio(float("nan"), 1.0) is None


def test_variants_are_set_beside_plain_cuda_at_the_same_batch(bench: Any) -> None:
    made = results(bench)
    made.variants = [bench.report.VariantRow("cuda graphs", 8, 125.0, 0.064, "session 3.0 s")]
    rows = table_rows(bench.report.render(made), "CUDA graphs and TensorRT")
    assert rows == [["cuda graphs", "8", "125.00", "100.00", "1.25x", "session 3.0 s"]]


# --- the GPU sampler ------------------------------------------------------------------------


def test_the_sampler_keeps_the_peak_and_the_mean_busy_share(bench: Any) -> None:
    readings = iter(
        [
            bench.meter.Reading(1000.0, 0.0),
            bench.meter.Reading(5000.0, 100.0),
            bench.meter.Reading(3000.0, 50.0),
        ]
    )
    use = bench.meter.summarise(list(readings))
    assert use.peak_mib == 5000.0 and use.busy_percent == 50.0
    count = iter(range(1, 100))

    def rising() -> Any:
        step = next(count)
        return bench.meter.Reading(1000.0 * step, 10.0 * step)

    # A period longer than the phase: only the readings at either end are taken, and
    # the one at the end must be, or a short phase's peak would be missed.
    with bench.meter.GpuSampler(rising, 60.0) as sampler:
        pass
    assert sampler.result == bench.meter.GpuUse(2000.0, 15.0)
    with bench.meter.GpuSampler(None) as nothing:
        pass
    assert nothing.result is None


# --- time bounds ----------------------------------------------------------------------------


def test_a_load_run_past_its_deadline_starts_no_request(bench: Any) -> None:
    # Port 9 on loopback: a request, if one were sent, would fail and be counted.
    endpoint = bench.load.Endpoint("http://127.0.0.1:9/", b"", {})
    result = bench.load.run_load(endpoint, os.getpid(), 4, 100, deadline_s=0.0)
    assert result.samples == []


def test_a_variant_child_past_its_time_limit_is_stopped_keeping_its_rows(
    bench: Any, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.json"
    row = {
        "variant": "tensorrt",
        "batch": 1,
        "images_per_s": 9.0,
        "seconds_per_run": 0.1,
        "note": "",
    }
    child = (
        f"import json, pathlib, time; pathlib.Path({str(rows)!r}).write_text("
        f"json.dumps([{row!r}])); time.sleep(60)"
    )
    status = bench.gpu.run_child(
        [sys.executable, "-c", child], dict(os.environ), 2.0, tmp_path / "child.log"
    )
    assert status.startswith("stopped at its time limit (2 s)")
    assert bench.variants.read_rows(rows) == [bench.report.VariantRow(**row)]
    failed = bench.gpu.run_child(
        [sys.executable, "-c", "raise SystemExit('no TensorRT')"],
        dict(os.environ),
        30.0,
        tmp_path / "failed.log",
    )
    assert failed == "the child exited 1: no TensorRT"


def channel_mean_session(tmp_path: Path) -> Any:
    """A CPU session of a one-node graph with IS-Net's input and output shapes."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["output"], axes=[1], keepdims=1)],
        "mean",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 1024, 1024])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, 1024, 1024])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = tmp_path / "mean.onnx"
    onnx.save(model, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), ort, path


def test_the_variants_engines_bind_their_buffers_and_return_each_image(
    bench: Any, tmp_path: Path
) -> None:
    import numpy as np

    session, ort, path = channel_mean_session(tmp_path)
    batch = np.random.default_rng(0).random((2, 3, 1024, 1024), dtype=np.float32)
    expected = batch.mean(axis=1)
    # The CUDA-graph engine's buffers on the CPU: the same binding calls, device aside.
    graph = bench.variants.GraphEngine(session, ort, 2, path, device="cpu")
    for _ in range(2):  # the second run reuses the bound buffers with new contents
        np.testing.assert_allclose(graph.run(batch), expected, rtol=1e-5)
        batch = batch[::-1].copy()
        expected = expected[::-1]
    tensorrt = bench.variants.TensorrtEngine(session, path, 2)
    np.testing.assert_allclose(tensorrt.run(batch[:1]), expected[:1], rtol=1e-5)


# --- staging for the GPU machine ------------------------------------------------------------


def test_parts_are_named_and_cut_as_split_does(bench: Any, tmp_path: Path) -> None:
    stage = bench.stage
    assert stage.part_names("model.part", 10, 4) == [
        "model.part.aa",
        "model.part.ab",
        "model.part.ac",
    ]
    assert stage.part_names("model.part", 8, 4) == ["model.part.aa", "model.part.ab"]
    many = stage.part_names("x", 27 * 4, 4)
    assert len(many) == 27 and many[-2:] == ["x.az", "x.ba"]  # and `cat x.*` keeps that order
    assert many == sorted(many)
    source = tmp_path / "model.onnx"
    source.write_bytes(bytes(range(256)) * 3)
    parts = stage.split_file(source, tmp_path / "model.part", 100)
    assert [p.name for p in parts][-1] == "model.part.ah"  # 768 bytes in 100-byte parts
    assert b"".join(p.read_bytes() for p in sorted(parts)) == source.read_bytes()


@pytest.mark.parametrize(
    ("version", "specifier", "inside"),
    [
        ("1.31.1", ">=1.22,<2", True),
        ("1.22", ">=1.22,<2", True),
        ("1.21.9", ">=1.22,<2", False),
        ("2.0.0", ">=1.22,<2", False),
        ("1.9", ">=1.22", False),
        ("1.22.0", "==1.22", True),
    ],
)
def test_the_wheel_version_is_checked_against_pyproject(
    bench: Any, version: str, specifier: str, inside: bool
) -> None:
    assert bench.stage.in_range(version, specifier) is inside


def test_the_calls_fit_the_device_limits(bench: Any) -> None:
    stage = bench.stage
    parts = ["model.part.aa", "model.part.ab", "wheels.part.aa", "wheels.part.ab"]
    calls = stage.calls(parts)
    assert [call.carry for call in calls] == [
        [".stage/model.part.aa"],
        [".stage/model.part.ab"],
        [".stage/wheels.part.aa"],
        [".stage/wheels.part.ab", ".stage/fixtures", ".stage/install.sh"],
    ]
    assert all(
        f"cp .stage/{part} /root/stage/" in call.command
        for part, call in zip(parts[:-1], calls[:-1], strict=True)
    )
    run = calls[-1]
    assert run.command.startswith("bash .stage/install.sh && ")
    assert 'benchmarks/gpu.py --out "$OUT" --fixtures .stage/fixtures' in run.command
    assert stage.CHECK_TIMEOUT_S < run.timeout_s <= 600
    assert stage.CHECK_BUDGET_S < stage.CHECK_TIMEOUT_S
    sizes = dict.fromkeys((f".stage/{p}" for p in parts), stage.PART_BYTES)
    sizes[".stage/fixtures"] = 4 * 2**20
    assert stage.check_calls(calls, sizes, 2 * 2**20) == []
    assert stage.check_calls(calls, sizes, 6 * 2**20) == ["call 4: carries 65.0 MiB with the tree"]
    long = [stage.Call([], "x" * 2001, 60)]
    assert stage.check_calls(long, {}, 0) == ["call 1: command of 2001 characters"]


def tiny_wheel(folder: Path, name: str) -> Path:
    """A pure-Python wheel of one module, as pip accepts it (no registry involved)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": "VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        record = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
        archive.writestr(f"{info}/RECORD", record)
    return wheel


def staged(bench: Any, tmp_path: Path) -> tuple[Path, Path, Path, list[str]]:
    """A checkout with .stage/ assembled from a small model and two tiny wheels."""
    checkout, device, site = tmp_path / "checkout", tmp_path / "device", tmp_path / "site"
    (checkout / ".stage").mkdir(parents=True)
    model = tmp_path / "cuda-fp16.onnx"
    model.write_bytes(os.urandom(3000))
    wheels = tmp_path / "download"
    tiny_wheel(wheels, "alpha")
    tiny_wheel(wheels, "beta")
    parts = bench.stage.assemble(
        checkout / ".stage", model, wheels, FIXTURES, 1024, device_stage=str(device), site=str(site)
    )
    return checkout, device, site, parts


def test_the_staged_parts_join_verify_and_install(bench: Any, tmp_path: Path) -> None:
    checkout, device, site, parts = staged(bench, tmp_path)
    assert parts[:3] == ["model.part.aa", "model.part.ab", "model.part.ac"]
    assert parts[3].startswith("wheels.part.") and not list(tmp_path.glob("**/*.tar"))
    assert sorted(p.name for p in (checkout / ".stage" / "fixtures").glob("*.jpg")) == [
        "anime-girl-1.jpg",
        "car-1.jpg",
        "cloth-1.jpg",
        "plants-1.jpg",
    ]
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", ".stage/install.sh"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    joined = device / "cache" / "isnet-general-use" / "cuda-fp16.onnx"
    assert joined.read_bytes() == (tmp_path / "cuda-fp16.onnx").read_bytes()
    assert (site / "alpha.py").is_file() and (site / "beta.py").is_file()


def test_a_missing_or_damaged_part_fails_the_install(bench: Any, tmp_path: Path) -> None:
    checkout, _device, site, _parts = staged(bench, tmp_path)
    part = checkout / ".stage" / "model.part.ab"
    part.write_bytes(b"\0" + part.read_bytes()[1:])
    done = subprocess.run(
        ["bash", ".stage/install.sh"],
        cwd=checkout,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr
    assert not (site / ".installed").exists()
    digest = hashlib.sha256((tmp_path / "cuda-fp16.onnx").read_bytes()).hexdigest()
    assert digest in (checkout / ".stage" / "install.sh").read_text()
