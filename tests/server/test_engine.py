"""The ONNX engine on the real model: plain runs and IO-bound runs agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server.engine import OnnxEngine
from server.isnet import to_tensor
from tests.conftest import fixture_photos, model_settings

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engine() -> OnnxEngine:
    settings = model_settings(provider="cpu")
    return OnnxEngine.load(settings)


def photo_batch(paths: list[Path]) -> np.ndarray:
    return np.stack([to_tensor(np.asarray(Image.open(p).convert("RGB"))) for p in paths])


def test_io_binding_gives_the_plain_run_result(engine: OnnxEngine) -> None:
    # The CUDA path binds to "cuda"; binding to "cpu" runs the same code here.
    bound = OnnxEngine(engine._session, "cpu", Path(engine.model_file), bind_to="cpu")
    batch = photo_batch(fixture_photos()[:2])
    plain = engine.run(batch)
    through_binding = bound.run(batch)
    assert through_binding.shape == plain.shape == (2, 1024, 1024)
    assert np.allclose(through_binding, plain, atol=1e-5)
    # Not a constant: the two photos give different masks.
    assert not np.allclose(plain[0], plain[1], atol=0.1)


def test_the_cpu_engine_runs_without_binding(engine: OnnxEngine) -> None:
    assert engine.provider == "cpu"
    assert engine._bind_to is None
    assert Path(engine.model_file).name == "cpu-fp32.onnx"
