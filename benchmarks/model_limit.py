"""The model's own limit: ONNX Runtime `session.run` alone, no HTTP, no decode or encode.

This is the ceiling Matte's end-to-end throughput is compared against. Each
layout is K callers running at once, each with N intra-op threads, on either
one session shared by the callers (what the server's scheduler does with
MATTE_WORKERS=K) or one session per caller.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from load import CpuMeter
from PIL import Image

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
    spinning: bool
    provider: str
    runs: int  # timed runs per caller
    seconds: float  # wall time of all timed runs
    cpu_s: float  # CPU time this process used in them (all threads)
    other_cores: float  # CPU used meanwhile by other processes, in cores (noise)

    @property
    def images(self) -> int:
        return self.layout.callers * self.runs * self.batch

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_per_image(self) -> float:
        # Robust where other work shares the cores: waiting threads sleep (no spinning).
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


def open_session(model: Path, provider: str, threads: int, spinning: bool) -> Any:
    """A session set up as server/engine.py sets its own (threads, spinning, optimisation)."""
    import onnxruntime as ort  # heavy: only when a measurement really runs

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    providers: list[Any] = ["CPUExecutionProvider"]
    if provider == "cuda":
        providers = [
            ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}),
            "CPUExecutionProvider",
        ]
    return ort.InferenceSession(str(model), options, providers=providers)


def measure(
    model: Path,
    photo: Path,
    layout: Layout,
    batch: int,
    *,
    provider: str = "cpu",
    spinning: bool = False,
    warmup: int = 1,
    runs: int = 3,
) -> LimitResult:
    """Images/s of `layout` at `batch`: warm-up runs first, then `runs` timed runs per caller."""
    sessions = _sessions(model, provider, layout, spinning)
    feed = _feed(sessions[0], realistic_input(photo, batch))
    output = sessions[0].get_outputs()[0].name
    for session in {id(session): session for session in sessions}.values():
        for _ in range(warmup):  # first runs allocate arenas and pick kernels
            session.run([output], feed)
    barrier = threading.Barrier(layout.callers + 1)

    def call(session: Any) -> None:
        barrier.wait()
        for _ in range(runs):
            session.run([output], feed)

    threads = [threading.Thread(target=call, args=(session,)) for session in sessions]
    for thread in threads:
        thread.start()
    barrier.wait()  # every caller starts at once, so the clock times them side by side
    started, meter = time.perf_counter(), CpuMeter(os.getpid())
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu, other = meter.stop()
    return LimitResult(layout, batch, spinning, provider, runs, seconds, cpu, other)


def _sessions(model: Path, provider: str, layout: Layout, spinning: bool) -> list[Any]:
    if layout.shared:
        # ONNX Runtime's `run` is thread-safe: the server's workers share one session.
        return [open_session(model, provider, layout.threads, spinning)] * layout.callers
    return [open_session(model, provider, layout.threads, spinning) for _ in range(layout.callers)]


def _feed(session: Any, batch: np.ndarray) -> dict[str, np.ndarray]:
    first = session.get_inputs()[0]
    # A half-precision graph without float32 I/O wants float16 in.
    dtype = np.float16 if first.type == "tensor(float16)" else np.float32
    return {first.name: batch.astype(dtype, copy=False)}


def cases(cores: int, batches: list[int], quick: bool) -> list[tuple[Layout, int, bool]]:
    """(layout, batch, spinning) to measure: every layout and batch with spinning off, as
    the server runs; then 1 x cores with spinning on, to show what turning it off costs."""
    if quick:
        return [(Layout(1, cores), batches[0], False)]
    layouts = default_layouts(cores)
    # One session per caller too: more memory, but no shared arena or thread pool.
    layouts += [Layout(k.callers, k.threads, shared=False) for k in layouts if k.callers > 1]
    found = [(layout, batch, False) for layout in layouts for batch in batches]
    return [*found, (Layout(1, cores), batches[0], True)]


def best(results: list[LimitResult]) -> LimitResult:
    return max(results, key=lambda result: result.images_per_s)
