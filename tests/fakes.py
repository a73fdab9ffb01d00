"""Small fakes for fast contract tests (never for model-quality tests)."""

from __future__ import annotations

import threading
import time

import numpy as np
from starlette.types import Scope


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


class SlowEngine(BrightnessEngine):
    """Takes `seconds` a run, as a model on a CPU does; `runs` counts the runs after
    the warm-up (whose input is all zeros)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.runs = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.any():
            with self._lock:
                self.runs += 1
            time.sleep(self.seconds)
        return super().run(batch)


class FailingOnceEngine(BrightnessEngine):
    """Passes the warm-up, raises with a secret message on the first request's run,
    then works: a model fault the server must survive."""

    SECRET = "secret detail: tensor arena corrupted at 0xfeedface"

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.any() and not self.failed:
            self.failed = True
            raise RuntimeError(self.SECRET)
        return super().run(batch)


class HangingEngine(BrightnessEngine):
    """Passes the warm-up, then blocks its first request's run until `release` is set
    (a hung model); later runs work. Tests set `release` when they end, so the
    stuck thread never outlives them (and never waits past `limit_s` anyway)."""

    def __init__(self, limit_s: float = 60.0) -> None:
        super().__init__()
        self.hung = threading.Event()  # set when the first run blocks
        self.release = threading.Event()
        self.limit_s = limit_s

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.any() and not self.hung.is_set():
            self.hung.set()
            self.release.wait(self.limit_s)
        return super().run(batch)


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def post_scope(
    path: str,
    headers: list[tuple[bytes, bytes]],
    client: tuple[str, int] = ("127.0.0.1", 5000),
    server: tuple[str, int] = ("testserver", 80),
) -> Scope:
    """An ASGI HTTP scope for a POST to `path`, for tests that drive the app by hand
    (their own `receive` and `send`) to control exactly when the body arrives."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": server,
    }
