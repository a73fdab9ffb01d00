"""The GPU's own readings through NVML (the driver's library, read with ctypes): its name and
driver, and memory and busy time sampled on a thread while a phase runs.

No NVIDIA driver (CI, a laptop): `Nvml.open()` is None and every reading says "n/a".
Memory is the whole device's (the check has the GPU machine to itself): the peak
includes the CUDA context of every process using it, the Matte server's included.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

MIB = 1024 * 1024


class _Memory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


class _Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class Reading(NamedTuple):
    used_mib: float
    busy_percent: float  # share of the last sample period a kernel ran


class Nvml:
    """GPU 0 through libnvidia-ml.so.1."""

    def __init__(self, library: ctypes.CDLL, handle: ctypes.c_void_p) -> None:
        self._lib = library
        self._handle = handle

    @classmethod
    def open(cls) -> Nvml | None:
        try:
            library = ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            return None
        handle = ctypes.c_void_p()
        if library.nvmlInit_v2() != 0:
            return None
        if library.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(0), ctypes.byref(handle)) != 0:
            return None
        return cls(library, handle)

    def name(self) -> str:
        buffer = ctypes.create_string_buffer(96)
        self._lib.nvmlDeviceGetName(self._handle, buffer, ctypes.c_uint(96))
        return buffer.value.decode(errors="replace")

    def driver(self) -> str:
        buffer = ctypes.create_string_buffer(80)
        self._lib.nvmlSystemGetDriverVersion(buffer, ctypes.c_uint(80))
        return buffer.value.decode(errors="replace")

    def cuda_driver(self) -> str:
        """The newest CUDA the driver supports, e.g. 13.0."""
        version = ctypes.c_int(0)
        self._lib.nvmlSystemGetCudaDriverVersion(ctypes.byref(version))
        return f"{version.value // 1000}.{version.value % 1000 // 10}"

    def total_mib(self) -> float:
        memory = _Memory()
        self._lib.nvmlDeviceGetMemoryInfo(self._handle, ctypes.byref(memory))
        total: int = memory.total
        return total / MIB

    def read(self) -> Reading:
        memory, utilization = _Memory(), _Utilization()
        self._lib.nvmlDeviceGetMemoryInfo(self._handle, ctypes.byref(memory))
        self._lib.nvmlDeviceGetUtilizationRates(self._handle, ctypes.byref(utilization))
        return Reading(memory.used / MIB, float(utilization.gpu))


@dataclass(frozen=True)
class GpuUse:
    peak_mib: float
    busy_percent: float  # mean over the samples


class GpuSampler:
    """A context manager sampling `read` every `interval_s` on a thread.

    `read` is injectable so the arithmetic is tested without a GPU; `result` is
    None when there is nothing to read.
    """

    def __init__(self, read: Callable[[], Reading] | None, interval_s: float = 0.1) -> None:
        self._read = read
        self._interval_s = interval_s
        self._samples: list[Reading] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gpu-sampler", daemon=True)

    def __enter__(self) -> GpuSampler:
        if self._read is not None:
            self._samples.append(self._read())
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._read is not None:
            self._samples.append(self._read())

    @property
    def result(self) -> GpuUse | None:
        return summarise(self._samples)

    def _poll(self) -> None:
        assert self._read is not None
        while not self._stop.wait(self._interval_s):
            self._samples.append(self._read())


def summarise(samples: list[Reading]) -> GpuUse | None:
    if not samples:
        return None
    busy = sum(sample.busy_percent for sample in samples) / len(samples)
    return GpuUse(max(sample.used_mib for sample in samples), busy)
