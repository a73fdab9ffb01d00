"""Small fakes for fast contract tests (never for model-quality tests)."""

from __future__ import annotations

import threading

import numpy as np


class BrightnessEngine:
    """Predicts 'foreground' where the input is bright: deterministic, instant,
    and tied to the picture, so tests can check where alpha lands."""

    provider = "fake"
    engine = "fake"
    precision = "fp32"
    model_file = "brightness"
    max_batch = 64

    def __init__(self) -> None:
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.batches.append(len(batch))
        # Inputs are pixel/255 - 0.5: above 0 is brighter than mid-grey.
        prediction: np.ndarray = (batch.mean(axis=1) > 0).astype(np.float32)
        return prediction


class BrokenEngine(BrightnessEngine):
    """Passes the warm-up, then fails every request with a message that must never leak."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        if not batch.any():  # the warm-up's all-zero input
            return super().run(batch)
        raise RuntimeError("secret internal detail: CUDA out of memory at 0xdeadbeef")


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
