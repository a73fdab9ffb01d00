"""INT8 fast mode: the quantised CPU model's speed and its masks against the full model's.

The speed is the model limit again (`model_limit.measure`, the server's own
session) with MATTE_PRECISION=int8; the quality is the soft IoU of its masks
against fp32's on the rembg fixtures, made with the server's own decode and
pre- and post-processing, so both figures are what a server would give.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from model_limit import LimitResult
from servers import ROOT

if TYPE_CHECKING:
    from server.engine import Engine
    from server.settings import Settings

FIXTURES = ROOT.parent / "shared" / "fixtures" / "rembg"


@dataclass
class Int8Result:
    limits: list[LimitResult] = field(default_factory=list)  # batch 1, int8
    ious: dict[str, float] = field(default_factory=dict)  # fixture stem -> soft IoU vs fp32


def int8_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, precision="int8")


def int8_file(settings: Settings) -> Path:
    """<cache>/isnet-general-use/cpu-int8.onnx, or whatever the settings name for int8."""
    return int8_settings(settings).model_file("cpu")


def soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Soft IoU of two uint8 alpha masks: sum(min) / sum(max) over [0, 1] values.

    The same measure as the tests' (tests/conftest.py), kept here so the
    harness does not import the test suite.
    """
    fa = a.astype(np.float64) / 255
    fb = b.astype(np.float64) / 255
    union = np.maximum(fa, fb).sum()
    return float(np.minimum(fa, fb).sum() / union) if union else 1.0


def fixture_ious(settings: Settings, photos: list[Path]) -> dict[str, float]:
    """Soft IoU of int8's mask against fp32's for each photo, decoded as the server does."""
    from server.engine import OnnxEngine
    from server.imaging import Limits, decode

    # One caller with every core: these runs check quality, so only their speed matters here.
    quick = dataclasses.replace(settings, workers=1, intra_op_threads=settings.cores)
    limits = Limits(settings.min_side, settings.min_pixels, settings.max_pixels)
    full = OnnxEngine.load(dataclasses.replace(quick, precision="fp32"))
    int8 = OnnxEngine.load(int8_settings(quick))
    ious = {}
    for photo in photos:
        picture = decode(photo.read_bytes(), limits)
        ious[photo.stem] = soft_iou(_mask(int8, picture.rgb), _mask(full, picture.rgb))
    return ious


def _mask(engine: Engine, rgb: np.ndarray) -> np.ndarray:
    from server.isnet import to_mask, to_tensor

    prediction = engine.run(to_tensor(rgb)[None])[0]
    return to_mask(prediction, (rgb.shape[1], rgb.shape[0]))
