"""CUDA graphs and TensorRT: the model run two other ways, measured beside plain CUDA.

Each variant runs in a child process (`gpu.py variant NAME`) under the phase's time
limit: a TensorRT engine build can take minutes and cannot be interrupted in
process, and a provider that crashes must not take the whole check with it. The
child writes its rows to a JSON file after each batch, so a killed child still
leaves what it measured.

- CUDA graphs: ONNX Runtime captures the whole run once per session and replays
  it; that needs static shapes and device buffers bound once, so one session per
  batch size, input copied into a bound device buffer, output copied back (the
  same copies as the server's IO binding).
- TensorRT: fp16, its engine and timing caches under MATTE_CACHE_DIR/tensorrt,
  one optimisation profile per batch size (min = opt = max = that batch).
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from gpu_report import VariantRow
from model_limit import SIDE, Layout, measure_engines

if TYPE_CHECKING:
    from server.settings import Settings

VARIANTS = ("cuda graphs", "tensorrt")
TENSORRT_LIBRARY = "libnvinfer.so.10"  # what the onnxruntime-gpu wheel's provider loads


def tensorrt_missing(available: list[str]) -> str:
    """Why TensorRT cannot run here; empty when it can be tried."""
    if "TensorrtExecutionProvider" not in available:
        return "ONNX Runtime has no TensorrtExecutionProvider"
    try:
        load_tensorrt()
    except OSError as error:
        return (
            f"{TENSORRT_LIBRARY} is not on this machine (the ONNX Runtime wheel has the "
            f"provider, not TensorRT itself): {str(error)[:120]}"
        )
    return ""


def load_tensorrt() -> None:
    """Load TensorRT's libraries so the provider finds them: from the loader's path, else
    from the `tensorrt_libs` wheel (which, like the nvidia-* wheels, is off that path)."""
    try:
        ctypes.CDLL(TENSORRT_LIBRARY, mode=ctypes.RTLD_GLOBAL)
        return
    except OSError:
        spec = importlib.util.find_spec("tensorrt_libs")
        if spec is None or not spec.submodule_search_locations:
            raise
    folder = Path(next(iter(spec.submodule_search_locations)))
    libraries = sorted(folder.glob("libnv*.so*"))
    if not any(library.name == TENSORRT_LIBRARY for library in libraries):
        raise OSError(f"no {TENSORRT_LIBRARY} in {folder}")
    ctypes.CDLL(str(folder / TENSORRT_LIBRARY), mode=ctypes.RTLD_GLOBAL)  # the others need it
    for library in libraries:
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)


class GraphEngine:
    """One batch size, replayed from a captured CUDA graph."""

    engine = "onnxruntime"
    provider = "cuda"
    precision = "fp16"

    def __init__(
        self, session: Any, ort: Any, batch: int, model_file: Path, device: str = "cuda"
    ) -> None:
        self.model_file = str(model_file)
        self.max_batch = batch
        self._session = session
        self._input = ort.OrtValue.ortvalue_from_numpy(
            np.zeros((batch, 3, SIDE, SIDE), np.float32), device, 0
        )
        self._output = ort.OrtValue.ortvalue_from_shape_and_type(
            [batch, 1, SIDE, SIDE], np.float32, device, 0
        )
        self._binding = session.io_binding()
        self._binding.bind_ortvalue_input(session.get_inputs()[0].name, self._input)
        self._binding.bind_ortvalue_output(session.get_outputs()[0].name, self._output)

    def run(self, batch: np.ndarray) -> np.ndarray:
        self._input.update_inplace(np.ascontiguousarray(batch))  # same buffer: graph replays
        self._session.run_with_iobinding(self._binding)
        output: np.ndarray = self._output.numpy()
        return output.reshape(batch.shape[0], SIDE, SIDE)


class TensorrtEngine:
    """Every profile's batch size on one TensorRT session."""

    engine = "onnxruntime"
    provider = "tensorrt"
    precision = "fp16"

    def __init__(self, session: Any, model_file: Path, max_batch: int) -> None:
        self.model_file = str(model_file)
        self.max_batch = max_batch
        self._session = session
        self._input_name = session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        output: np.ndarray = self._session.run(None, {self._input_name: batch})[0]
        return output.reshape(batch.shape[0], SIDE, SIDE)


def _options(ort: Any) -> Any:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _cuda(**extra: str) -> tuple[str, dict[str, str]]:
    return ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC", **extra})


def graph_session(ort: Any, settings: Settings, model: Path) -> Any:
    session = ort.InferenceSession(
        str(model), _options(ort), providers=[_cuda(enable_cuda_graph="1")]
    )
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"CUDA did not start (providers: {session.get_providers()})")
    return session


def tensorrt_session(ort: Any, settings: Settings, model: Path, batches: list[int]) -> Any:
    cache = settings.cache_dir / "tensorrt"
    cache.mkdir(parents=True, exist_ok=True)
    name = "input"
    shapes = ",".join(f"{name}:{batch}x3x{SIDE}x{SIDE}" for batch in batches)
    trt = {
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
        "trt_profile_min_shapes": shapes,
        "trt_profile_opt_shapes": shapes,
        "trt_profile_max_shapes": shapes,
    }
    session = ort.InferenceSession(
        str(model),
        _options(ort),
        providers=[("TensorrtExecutionProvider", trt), _cuda(), "CPUExecutionProvider"],
    )
    if session.get_providers()[0] != "TensorrtExecutionProvider":
        raise RuntimeError(f"TensorRT did not start (providers: {session.get_providers()})")
    return session


def measure_variant(
    name: str, settings: Settings, photo: Path, batches: list[int], runs: int, result: Path
) -> None:
    """Measure `name` at each batch, rewriting `result` (a JSON list of rows) after each."""
    import onnxruntime as ort

    ort.preload_dlls()
    if name == "tensorrt":
        load_tensorrt()
    model = settings.model_file("cuda")
    rows: list[VariantRow] = []
    layout = Layout(1, settings.cores)
    started = time.perf_counter()
    shared = (
        TensorrtEngine(tensorrt_session(ort, settings, model, batches), model, max(batches))
        if name == "tensorrt"
        else None
    )
    build_s = time.perf_counter() - started
    for index, batch in enumerate(batches):
        begun = time.perf_counter()
        engine = shared or GraphEngine(graph_session(ort, settings, model), ort, batch, model)
        limit = measure_engines([engine], photo, layout, batch, warmup=2, runs=runs)
        # Until the timed runs: the session (the TensorRT engine once, for every batch)
        # and the warm-up runs, which capture the CUDA graph.
        built = build_s if shared and index == 0 else 0.0
        ready_s = time.perf_counter() - begun - limit.seconds + built
        note = f"session and warm-up {ready_s:.1f} s" + (
            " (the engine built or read from its cache)" if built else ""
        )
        rows.append(VariantRow(name, batch, limit.images_per_s, limit.seconds_per_run, note))
        result.write_text(json.dumps([asdict(row) for row in rows]))
        del engine


def read_rows(result: Path) -> list[VariantRow]:
    """What a child wrote, even if it was killed before it finished."""
    try:
        data = json.loads(result.read_text())
    except (OSError, ValueError):
        return []
    return [VariantRow(**row) for row in data]
