"""The CPU engine on OpenVINO: the prepared ONNX file read directly, compiled for
this CPU in fp32, bf16 (AMX or AVX-512 BF16) or the quantised int8 graph.

Its output is the same (N, 1024, 1024) float32 raw first output as ONNX
Runtime's, so everything after `predict` is unchanged. Compiled models are
cached under MATTE_CACHE_DIR/openvino (a restart compiles in a fraction of the
time).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .isnet import SIDE
from .settings import Settings

log = logging.getLogger("matte.engine")

CpuPrecision = Literal["fp32", "bf16", "int8"]
# OpenVINO's names for the precisions a run computes in.
_HINTS: dict[CpuPrecision, str] = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


class PrecisionUnsupported(RuntimeError):
    """The precision asked for is not one this CPU computes in."""


def resolve_precision(asked: str, capabilities: Collection[str]) -> CpuPrecision:
    """The precision to run: `asked`, or for auto the fastest within the quality
    bounds (bf16 where OpenVINO says the CPU has it, else fp32)."""
    has_bf16 = "BF16" in capabilities
    if asked == "auto":
        return "bf16" if has_bf16 else "fp32"
    if asked == "bf16" and not has_bf16:
        raise PrecisionUnsupported(
            "MATTE_PRECISION=bf16 needs a CPU with AMX or AVX-512 BF16, and OpenVINO reports "
            f"none here (its capabilities: {', '.join(sorted(capabilities)) or 'none'}); "
            "use fp32 or auto"
        )
    if asked in ("fp32", "bf16", "int8"):
        precision: CpuPrecision = asked  # type: ignore[assignment]
        return precision
    raise ValueError(f"unknown precision {asked!r}")


class OpenVinoEngine:
    provider = "cpu"
    engine = "openvino"

    def __init__(
        self, compiled: Any, model_file: Path, precision: CpuPrecision, requests: int
    ) -> None:
        self._compiled = compiled
        self.model_file: str = str(model_file)
        self.precision: str = precision
        # The prepared files have a symbolic batch dimension: any batch in one run.
        self.max_batch: int = 1024
        # One infer request per stream: a request is not safe for two threads at
        # once, and the scheduler's workers may run at the same time.
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(max(1, requests)):
            self._idle.put(compiled.create_infer_request())

    @classmethod
    def load(cls, settings: Settings) -> OpenVinoEngine:
        import openvino as ov  # heavy import: only when a model is really loaded

        from .engine import ModelMissing

        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        precision = resolve_precision(settings.precision, capabilities)
        model_file = settings.model_file("cpu")
        if not model_file.is_file():
            raise ModelMissing(
                f"model file {model_file} not found: run `make model` "
                "(or set MATTE_MODEL_PATH to an IS-Net ONNX file)"
            )
        cache = settings.cache_dir / "openvino"
        cache.mkdir(parents=True, exist_ok=True)
        core.set_property({"CACHE_DIR": str(cache)})
        layout = settings.layout("cpu")
        compiled = core.compile_model(
            str(model_file),
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": _HINTS[precision],
                # One stream per worker, each with its share of the cores: the
                # same layout as ONNX Runtime's sessions.
                "PERFORMANCE_HINT": "LATENCY",
                # Unpinned, so the OS can move a model thread off a core that a
                # stage around the model holds (decode, resize, encode run beside
                # it): 4 MP at concurrency 4 went from 2.52 to 2.90 images/s.
                "ENABLE_CPU_PINNING": "NO",
                "NUM_STREAMS": str(layout.workers),
                "INFERENCE_NUM_THREADS": str(layout.threads * layout.workers),
            },
        )
        log.info("OpenVINO compiled %s for %s", model_file.name, precision)
        return cls(compiled, model_file, precision, layout.workers)

    def run(self, batch: np.ndarray) -> np.ndarray:
        request = self._idle.get()
        try:
            request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
            # Copied out: the request's buffer is reused by its next run.
            output = np.array(request.get_output_tensor(0).data, dtype=np.float32)
        finally:
            self._idle.put(request)
        shaped: np.ndarray = output.reshape(batch.shape[0], SIDE, SIDE)
        return shaped
