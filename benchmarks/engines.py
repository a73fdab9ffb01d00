"""The CPU engines side by side: one model run (1024x1024, batch 1) on each engine
and precision this CPU supports, as the server loads them (`load_engine`).

    .venv/bin/python benchmarks/engines.py [--runs 7] [--out benchmarks/ENGINES.md]
    .venv/bin/python benchmarks/engines.py --layouts [--images 8]

`--layouts` prints instead, for the default engine and precision, how each concurrency
layout (model runs at once x threads each, batch size) answers a lone image and how many
images a second it keeps up when four or more are waiting.

Writes a markdown table with the CPU's model and the flags that matter (AVX-512,
AMX, VNNI) and OpenVINO's own capabilities, so a figure always says where it
was measured. Run it on an otherwise idle machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.engine import load_engine  # noqa: E402
from server.settings import EngineName, Precision, Settings  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
CASES: tuple[tuple[EngineName, Precision], ...] = (
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("onnxruntime", "int8"),
    ("openvino", "int8"),
)


def cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or "unknown", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, [flag for flag in FLAGS if flag in flags]


def measure(settings: Settings, runs: int) -> tuple[float, float, float] | str:
    """(median s, min s, load s) of one run, or why the case cannot run here."""
    started = time.perf_counter()
    try:
        engine = load_engine(settings)
    except Exception as error:  # a precision this CPU lacks, a file not built
        return f"{type(error).__name__}: {error}".split("\n")[0][:160]
    loaded = time.perf_counter() - started
    batch = np.random.default_rng(0).random((1, 3, 1024, 1024), dtype=np.float32) - 0.5
    for _ in range(2):
        engine.run(batch)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        engine.run(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), loaded


# (workers, batch size): one run with every core, two runs of half the cores, a batch of 2.
LAYOUTS = ((1, 1), (2, 1), (1, 2))


def measure_layout(settings: Settings, images: int) -> tuple[float, float, float]:
    """(fastest lone image s, images/s and CPU s an image with `images` waiting) for the
    settings' layout. CPU seconds (every thread of the process) are what other load on a
    shared machine disturbs least."""
    layout = settings.layout("cpu")
    engine = load_engine(settings)
    rng = np.random.default_rng(0)
    one = rng.random((1, 3, 1024, 1024), dtype=np.float32) - 0.5
    full = rng.random((layout.batch_size, 3, 1024, 1024), dtype=np.float32) - 0.5
    with ThreadPoolExecutor(layout.workers) as pool:
        list(pool.map(lambda _: engine.run(full), range(layout.workers)))  # warm every stream
        lone = []
        for _ in range(3):
            started = time.perf_counter()
            engine.run(one)
            lone.append(time.perf_counter() - started)
        runs = -(-images // layout.batch_size)
        started, cpu_started = time.perf_counter(), time.process_time()
        list(pool.map(lambda _: engine.run(full), range(runs)))
        done = runs * layout.batch_size
        rate = done / (time.perf_counter() - started)
        cpu_s = (time.process_time() - cpu_started) / done
    return min(lone), rate, cpu_s


def layouts(base: Settings, images: int) -> None:
    print(f"{base.engine} {base.precision}, {base.cores} cores, {images} images per run")
    print(
        "| runs at once x threads | batch | lone image s "
        f"| images/s, {images} queued | CPU s/image |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for workers, batch in LAYOUTS:
        settings = dataclasses.replace(base, workers=workers, batch_size=batch)
        lone, rate, cpu_s = measure_layout(settings, images)
        threads = settings.layout("cpu").threads
        print(f"| {workers} x {threads} | {batch} | {lone:.2f} | {rate:.2f} | {cpu_s:.2f} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "ENGINES.md")
    parser.add_argument("--layouts", action="store_true", help="compare concurrency layouts")
    parser.add_argument("--images", type=int, default=8, help="images per --layouts run")
    args = parser.parse_args()
    base = dataclasses.replace(Settings.from_env(), provider="cpu")
    if args.layouts:
        layouts(base, args.images)
        return
    import openvino as ov

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    model, flags = cpu()
    rows = []
    for engine, precision in CASES:
        result = measure(dataclasses.replace(base, engine=engine, precision=precision), args.runs)
        if isinstance(result, str):
            rows.append(f"| {engine} | {precision} | | | | not here: {result} |")
        else:
            median, best, loaded = result
            rows.append(
                f"| {engine} | {precision} | {median:.3f} | {best:.3f} | {1 / median:.2f} "
                f"| loaded in {loaded:.1f} s |"
            )
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# CPU engines: one model run",
            "",
            f"Measured {dt.date.today().isoformat()} with `.venv/bin/python benchmarks/engines.py "
            f"--runs {args.runs}`: one 1024x1024 image (batch 1) per run, {args.runs} timed runs "
            "after 2 warm-up runs, each engine as the server loads it (`load_engine`, "
            f"{base.layout('cpu').threads} threads).",
            "",
            f"- CPU: {model}, {os.cpu_count()} cores; flags: {', '.join(flags) or 'none of'} "
            f"({', '.join(FLAGS)} checked)",
            f"- OpenVINO {ov.__version__}: OPTIMIZATION_CAPABILITIES {', '.join(capabilities)}",
            "",
            "| engine | precision | median s/run | best s/run | images/s | note |",
            "| --- | --- | ---: | ---: | ---: | --- |",
            *rows,
            "",
        ]
    )
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
