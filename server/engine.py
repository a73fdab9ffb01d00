"""The model engine: which one runs (`load_engine`), ONNX Runtime's session (the
CUDA engine, and the CPU one on request), and the warm-up. OpenVINO's CPU
engine is in openvino_engine.py."""

from __future__ import annotations

import ctypes
import logging
import time
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from .isnet import SIDE
from .settings import Settings

log = logging.getLogger("matte.engine")

ProviderName = Literal["cuda", "cpu"]


class Engine(Protocol):
    """What the scheduler needs from a model: run a batch, say what runs it."""

    provider: str  # "cuda" or "cpu" (fakes: "fake")
    engine: str  # "onnxruntime" or "openvino"
    precision: str  # what the model computes in: fp32, fp16, bf16, int8
    model_file: str
    max_batch: int

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, 1024, 1024) float32 -> (N, 1024, 1024) float32 raw first output."""
        ...


class ModelMissing(RuntimeError):
    """The ONNX file is not where the settings say."""


def load_engine(settings: Settings) -> Engine:
    """The engine the settings ask for: ONNX Runtime on a usable GPU (CUDA, fp16)
    or when MATTE_ENGINE=onnxruntime, else OpenVINO on the CPU."""
    import onnxruntime as ort  # heavy import: only when a model is really loaded

    provider = choose_provider(settings, ort)
    if settings.engine == "onnxruntime" or provider == "cuda":
        return OnnxEngine.load(settings, provider)
    from .openvino_engine import OpenVinoEngine

    return OpenVinoEngine.load(settings)


class OnnxEngine:
    engine = "onnxruntime"

    def __init__(
        self,
        session: object,
        provider: ProviderName,
        model_file: Path,
        bind_to: str | None = None,
        precision: str = "fp32",
    ) -> None:
        self._session = session
        self.provider: str = provider
        self.precision = precision
        self.model_file: str = str(model_file)
        # Device for IO binding ("cuda", or "cpu" in tests); None runs plainly.
        self._bind_to = bind_to
        first_input = session.get_inputs()[0]  # type: ignore[attr-defined]
        self._input_name: str = first_input.name
        self._output_name: str = session.get_outputs()[0].name  # type: ignore[attr-defined]
        batch_dim = first_input.shape[0]
        # A symbolic batch dimension (the prepared files) takes any batch at
        # once; a file with a fixed 1 (e.g. rembg's) is run an image at a time.
        self.max_batch: int = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else 1024

    @classmethod
    def load(cls, settings: Settings, provider: ProviderName | None = None) -> OnnxEngine:
        """`provider`: what load_engine already chose (None: choose it here)."""
        import onnxruntime as ort  # heavy import: only when a model is really loaded

        provider = provider or choose_provider(settings, ort)
        if settings.precision == "bf16" and provider == "cpu":
            from .openvino_engine import PrecisionUnsupported

            raise PrecisionUnsupported(
                "MATTE_PRECISION=bf16 runs on OpenVINO only: set MATTE_ENGINE=auto or openvino"
            )
        model_file = settings.model_file(provider)
        if not model_file.is_file():
            raise ModelMissing(
                f"model file {model_file} not found: run `make model` "
                "(or set MATTE_MODEL_PATH to an IS-Net ONNX file)"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = settings.layout(provider).threads
        options.inter_op_num_threads = 1
        # Idle intra-op threads would otherwise spin and steal the cores that
        # decode and encode of the other requests need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        # The memory pattern pre-plans one block for every activation of the
        # graph; without it the arena reuses freed buffers. Measured on the
        # pruned fp32 model, one 1024x1024 run: peak RSS 1,651 MB -> 1,035 MB,
        # no slower.
        options.enable_mem_pattern = False
        providers: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]
        if provider == "cuda":
            providers = [
                ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}),
                "CPUExecutionProvider",
            ]
        session = ort.InferenceSession(str(model_file), options, providers=providers)
        active = session.get_providers()[0]
        if provider == "cuda" and active != "CUDAExecutionProvider":
            log.warning("CUDA execution provider failed to start; running on the CPU")
            provider = "cpu"
        # On a GPU the output stays in device memory until one copy back, and
        # the input goes up in one copy from the array, through IO binding.
        return cls(
            session,
            provider,
            model_file,
            bind_to="cuda" if provider == "cuda" else None,
            precision=_file_precision(model_file),
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] <= self.max_batch:
            return self._run(batch)
        parts = [
            self._run(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)
        ]
        return np.concatenate(parts)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._bind_to is None:
            output = self._session.run([self._output_name], {self._input_name: batch})[0]  # type: ignore[attr-defined]
        else:
            output = self._run_bound(batch, self._bind_to)
        shaped: np.ndarray = output.reshape(batch.shape[0], SIDE, SIDE)
        return shaped

    def _run_bound(self, batch: np.ndarray, device: str) -> np.ndarray:
        binding = self._session.io_binding()  # type: ignore[attr-defined]
        binding.bind_cpu_input(self._input_name, np.ascontiguousarray(batch))
        # Only the first output is bound: the prepared graphs have no other,
        # and a file with side outputs (rembg's) computes none it need not.
        binding.bind_output(self._output_name, device)
        self._session.run_with_iobinding(binding)  # type: ignore[attr-defined]
        output: np.ndarray = binding.copy_outputs_to_cpu()[0]
        return output


def _file_precision(model_file: Path) -> str:
    """What a prepared file computes in (models/fetch.py names them so); another
    file (MATTE_MODEL_PATH, e.g. rembg's) is taken as fp32."""
    for precision in ("fp16", "int8"):
        if model_file.stem.endswith(precision):
            return precision
    return "fp32"


def warm_up(engine: Engine) -> float:
    """Run one image so the first request pays no allocation or kernel-selection cost."""
    started = time.perf_counter()
    engine.run(np.zeros((1, 3, SIDE, SIDE), dtype=np.float32))
    return time.perf_counter() - started


def choose_provider(settings: Settings, ort: object) -> ProviderName:
    if settings.provider == "cpu":
        return "cpu"
    available = ort.get_available_providers()  # type: ignore[attr-defined]
    usable = "CUDAExecutionProvider" in available and _cuda_device_present()
    if settings.provider == "cuda" and not usable:
        log.warning("MATTE_PROVIDER=cuda but no usable CUDA device was found; using the CPU")
    if usable:
        # The nvidia-* pip wheels put CUDA and cuDNN where the loader cannot
        # see them; preload_dlls finds them (a no-op where they are absent).
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            preload()
        return "cuda"
    return "cpu"


def _cuda_device_present() -> bool:
    """Ask the driver directly, so a machine without one gets no CUDA load errors."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return False
    return count.value > 0
