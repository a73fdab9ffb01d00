"""Issue 15's shared options on the real model and a fixture photo, through the pipeline
(the dialects that expose them have their own end-to-end tests)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server.admission import Admission
from server.engine import Engine, load_engine
from server.framing import Box, foreground_box
from server.metrics import Metrics
from server.option_text import Length, Margin
from server.options import CutoutOptions
from server.pipeline import Cutout, Pipeline
from server.scheduler import Scheduler
from server.settings import Settings
from tests.conftest import FIXTURES, model_settings, reference_alpha

pytestmark = pytest.mark.model

CAR = FIXTURES / "car-1.jpg"
MARGIN = 12
# The server's mask and rembg's reference agree to a soft IoU of 0.995+; their boxes (alpha
# >= 10) to within a few pixels on each side.
BOX_TOLERANCE = 4
# Mean |colour - pymatting's whole-photo estimate| over the soft pixels, decontaminated:
# measured 0.38 (car-1); the photo's own colours (no decontamination) measure 2.24.
MAX_COLOUR_MAD = 1.0


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    yield load_engine(model_settings())


def cut(engine: Engine, settings: Settings, data: bytes, options: CutoutOptions) -> Cutout:
    """One request through a pipeline of one slot on the real engine."""

    async def main() -> Cutout:
        metrics = Metrics()
        admission = Admission(slots=1, line=0, max_wait_s=1, metrics=metrics, uploads=1)
        scheduler = Scheduler(engine)
        await scheduler.start()
        try:
            with admission.ticket() as ticket:
                pipeline = Pipeline(scheduler, admission, settings, metrics)
                return await pipeline.cutout(ticket, data, options, None)
        finally:
            await scheduler.stop()

    return asyncio.run(main())


def rgba(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image.convert("RGBA"))


def near(found: Box, expected: Box, tolerance: int = BOX_TOLERANCE) -> bool:
    return all(
        abs(a - b) <= tolerance
        for a, b in (
            (found.left, expected.left),
            (found.top, expected.top),
            (found.right, expected.right),
            (found.bottom, expected.bottom),
        )
    )


def test_crop_with_margin_and_decontamination(engine: Engine, tmp_path: Path) -> None:
    settings = model_settings(cache_dir=tmp_path)
    expected = foreground_box(reference_alpha(CAR))
    assert expected is not None
    plain = cut(engine, settings, CAR.read_bytes(), CutoutOptions())
    assert plain.foreground is not None and near(plain.foreground, expected), plain.foreground
    margin = Margin(*[Length(MARGIN, "px")] * 4)
    options = CutoutOptions(crop=True, crop_margin=margin, decontaminate=True)
    cutout = cut(engine, settings, CAR.read_bytes(), options)
    box = plain.foreground
    # Exactly the plain cut-out's box plus the margin, the subject at the margin.
    assert (cutout.width, cutout.height) == (box.width + 2 * MARGIN, box.height + 2 * MARGIN)
    assert cutout.foreground == Box(MARGIN, MARGIN, box.width, box.height)
    pixels = rgba(cutout.data)
    before = rgba(plain.data)[
        box.top - MARGIN : box.bottom + MARGIN, box.left - MARGIN : box.right + MARGIN
    ]
    assert pixels.shape == before.shape
    # The same alpha; colours changed only where it is partial, and there by enough to see.
    assert (pixels[..., 3] == before[..., 3]).all()
    opaque = pixels[..., 3] == 255
    assert (pixels[opaque] == before[opaque]).all()
    # Against pymatting's own estimate over the whole photo on the same alpha, where
    # alpha >= 1/4 (a fainter pixel says little of its colour).
    import pymatting

    photo = np.asarray(Image.open(CAR).convert("RGB"))
    whole = rgba(plain.data)[..., 3]
    estimate = pymatting.estimate_foreground_ml(photo / 255.0, whole / 255.0)
    window = np.s_[box.top - MARGIN : box.bottom + MARGIN, box.left - MARGIN : box.right + MARGIN]
    reference = np.rint(np.clip(estimate[window], 0, 1) * 255)
    soft = (pixels[..., 3] >= 64) & (pixels[..., 3] < 255)
    after = np.abs(pixels[soft, :3] - reference[soft]).mean()
    raw = np.abs(photo[window][soft] - reference[soft]).mean()
    print(f"car-1: {int(soft.sum())} soft pixels; colour error {raw:.1f} -> {after:.1f}")
    assert after < MAX_COLOUR_MAD < raw
