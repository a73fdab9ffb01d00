"""The model's own limit: the engine's `run` alone, no HTTP, no decode or encode.

This is the ceiling Matte's end-to-end throughput is compared against. The
engine is the server's own (`server.engine.load_engine`: OpenVINO on the CPU
unless MATTE_ENGINE says otherwise, ONNX Runtime on CUDA), so its options are
always the ones served.
Each layout is K callers running at once with N intra-op threads each, on one
session shared by the callers (what the scheduler does with MATTE_WORKERS=K)
or on one session per caller.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from load import CpuMeter
from PIL import Image

if TYPE_CHECKING:
    from server.engine import Engine
    from server.settings import Settings

SIDE = 1024  # IS-Net's input side; every photo is resized to it, whatever its size


@dataclass(frozen=True)
class Layout:
    callers: int  # model runs at once (the server's MATTE_WORKERS)
    threads: int  # intra-op threads per session
    shared: bool = True  # one session for all callers, as the server has

    @property
    def label(self) -> str:
        kind = "shared session" if self.shared or self.callers == 1 else "own sessions"
        return f"{self.callers}x{self.threads} ({kind})"


@dataclass(frozen=True)
class LimitResult:
    layout: Layout
    batch: int
    provider: str
    runs: int  # timed runs per caller
    seconds: float  # wall time of all timed runs
    cpu_s: float  # CPU time this process used in them (all threads)
    other_cores: float  # CPU used meanwhile by other processes, in cores (noise)
    engine: str = ""  # "openvino" or "onnxruntime", as the engine says
    precision: str = ""  # what the model computed in: fp32, bf16, int8, fp16

    @property
    def images(self) -> int:
        return self.layout.callers * self.runs * self.batch

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_per_image(self) -> float:
        # Steadier than wall time where other work shares the cores: idle threads sleep.
        return self.cpu_s / self.images

    @property
    def seconds_per_run(self) -> float:
        # Each caller ran `runs` times back to back, all callers side by side.
        return self.seconds / self.runs


def default_layouts(cores: int) -> list[Layout]:
    """1 x cores, then K x cores/K for each K that divides the cores (1x2 and 2x1 on 2 cores)."""
    layouts = [Layout(1, cores)]
    layouts += [Layout(k, cores // k) for k in range(2, cores + 1) if cores % k == 0]
    return layouts


def realistic_input(photo: Path, batch: int) -> np.ndarray:
    """A real photo as the model sees it: RGB 1024x1024, pixel/255 - 0.5, NCHW float32.

    A real photo rather than zeros or noise: some kernels' cost depends on the
    values (denormals, activations), so a synthetic input can flatter the model.
    """
    with Image.open(photo) as image:
        rgb = image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(rgb, dtype=np.float32) / np.float32(255) - np.float32(0.5)
    chw = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return np.repeat(chw[None], batch, axis=0)


def measure(
    settings: Settings, photo: Path, layout: Layout, batch: int, *, warmup: int = 2, runs: int = 3
) -> LimitResult:
    """Images/s of `layout` at `batch`: warm-up runs first, then `runs` timed runs per caller."""
    return measure_engines(_engines(settings, layout), photo, layout, batch, warmup=warmup,
                           runs=runs)


def measure_engines(
    engines: Sequence[Engine], photo: Path, layout: Layout, batch: int, *, warmup: int = 2,
    runs: int = 3,
) -> LimitResult:
    """`measure` on engines built elsewhere (one per caller, or one shared), e.g. the GPU
    check's CUDA-graph and TensorRT sessions, which the server cannot load yet."""
    inputs = realistic_input(photo, batch)
    for engine in {id(engine): engine for engine in engines}.values():
        for _ in range(warmup):  # first runs allocate the arena and pick kernels
            engine.run(inputs)
    barrier = threading.Barrier(layout.callers + 1)

    def call(engine: Engine) -> None:
        barrier.wait()
        for _ in range(runs):
            engine.run(inputs)

    threads = [threading.Thread(target=call, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    barrier.wait()  # every caller starts at once, so the clock times them side by side
    started, meter = time.perf_counter(), CpuMeter(os.getpid())
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu, other = meter.stop()
    first = engines[0]
    return LimitResult(layout, batch, first.provider, runs, seconds, cpu, other,
                       first.engine, first.precision)


def _engines(settings: Settings, layout: Layout) -> list[Engine]:
    from server.engine import load_engine  # imports the engines: only when measuring

    settings = dataclasses.replace(
        settings, workers=layout.callers, intra_op_threads=layout.threads
    )
    if layout.shared:
        # Both engines' `run` is thread-safe (OpenVINO: one infer request per
        # worker): the server's workers share one engine.
        return [load_engine(settings)] * layout.callers
    return [load_engine(settings) for _ in range(layout.callers)]


def cases(cores: int, batches: list[int], quick: bool) -> list[tuple[Layout, int]]:
    """(layout, batch) pairs to measure: every layout at every batch size."""
    if quick:
        return [(Layout(1, cores), batches[0])]
    layouts = default_layouts(cores)
    # One session per caller too: more memory, but no shared arena or thread pool.
    layouts += [Layout(k.callers, k.threads, shared=False) for k in layouts if k.callers > 1]
    return [(layout, batch) for layout in layouts for batch in batches]


def best(results: list[LimitResult]) -> LimitResult:
    return max(results, key=lambda result: result.images_per_s)
