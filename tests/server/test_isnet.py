"""server.isnet: IS-Net's input and output conventions, checked value by value."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from server import isnet

Pixels = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]
SIDE = 1024


def gradient(width: int, height: int) -> Pixels:
    """A photo whose three channels all differ (so a channel swap shows) and vary smoothly."""
    y, x = np.mgrid[:height, :width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256])
    return np.moveaxis(rgb, 0, -1).astype(np.uint8)


def test_side_is_the_models_input_size() -> None:
    assert isnet.SIDE == SIDE


def test_to_model_size_keeps_a_photo_already_at_the_models_size() -> None:
    rgb = gradient(SIDE, SIDE)
    out = isnet.to_model_size(rgb)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("size", [(640, 480), (1500, 1100)])
def test_to_model_size_is_a_lanczos_resize(size: tuple[int, int]) -> None:
    # The reference pre-processing (rembg's) is a plain LANCZOS resize to 1024 x 1024; below
    # 3x the model's side Pillow's reducing_gap does not come into play, so they agree.
    rgb = gradient(*size)
    out = isnet.to_model_size(rgb)
    assert out.shape == (SIDE, SIDE, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(rgb).resize((SIDE, SIDE), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(out, expected)
    bilinear = Image.fromarray(rgb).resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    assert not np.array_equal(out, np.asarray(bilinear))  # the filter matters here


def test_to_batch_is_nchw_pixel_over_255_minus_a_half() -> None:
    first = gradient(SIDE, SIDE)
    second = np.full((SIDE, SIDE, 3), (0, 128, 255), dtype=np.uint8)
    batch = isnet.to_batch([first, second])
    assert batch.shape == (2, 3, SIDE, SIDE) and batch.dtype == np.float32
    for out, image in zip(batch, (first, second), strict=True):
        expected = np.moveaxis(image, -1, 0).astype(np.float64) / 255 - 0.5
        # float32 arithmetic: within an ulp or so of the exact value, nowhere near the
        # 2e-3 a changed constant (256, or 0.49) would move it.
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    # The exact ends of the range: 0 -> -0.5, 255 -> 0.5.
    assert batch[1, 0, 0, 0] == np.float32(-0.5) and batch[1, 2, 0, 0] == np.float32(0.5)


def test_to_batch_of_nothing_is_empty() -> None:
    assert isnet.to_batch([]).shape == (0, 3, SIDE, SIDE)


def test_to_tensor_is_one_resized_image_of_the_batch() -> None:
    rgb = gradient(300, 200)
    np.testing.assert_array_equal(
        isnet.to_tensor(rgb), isnet.to_batch([isnet.to_model_size(rgb)])[0]
    )


def prediction_with(values: list[float]) -> Floats:
    """A (1024, 1024) raw prediction: one band of rows for each value."""
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    rows = SIDE // len(values)
    for i, value in enumerate(values):
        out[i * rows : (i + 1) * rows] = value
    out[len(values) * rows :] = values[-1]
    return out


def test_to_mask_min_max_scales_and_truncates() -> None:
    # min -2, max 6: (v + 2) * 255 / 8 -> 0, 127.5 -> 127 (truncated), 255, 31.875 -> 31,
    # 223.125 -> 223.
    values = [-2.0, 2.0, 6.0, -1.0, 5.0]
    mask = isnet.to_mask(prediction_with(values), (SIDE, SIDE))
    assert mask.shape == (SIDE, SIDE) and mask.dtype == np.uint8
    rows = SIDE // len(values)
    for i, expected in enumerate([0, 127, 255, 31, 223]):
        assert np.all(mask[i * rows : (i + 1) * rows] == expected), (values[i], expected)


def test_to_mask_resizes_to_the_photos_size_with_lanczos() -> None:
    prediction = prediction_with([0.0, 1.0, 0.25, 0.75])
    mask = isnet.to_mask(prediction, (300, 200))  # (width, height)
    assert mask.shape == (200, 300)
    scaled = (prediction * 255).astype(np.uint8)  # min 0, max 1: the scaling is * 255
    expected = Image.fromarray(scaled, "L").resize((300, 200), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(mask, np.asarray(expected))
    bilinear = Image.fromarray(scaled, "L").resize((300, 200), Image.Resampling.BILINEAR)
    assert not np.array_equal(mask, np.asarray(bilinear))  # the filter matters here


@pytest.mark.parametrize("value", [0.0, 0.7, -3.0])
def test_a_flat_prediction_is_all_background(value: float) -> None:
    mask = isnet.to_mask(np.full((SIDE, SIDE), value, dtype=np.float32), (300, 200))
    assert mask.shape == (200, 300) and mask.dtype == np.uint8
    assert not mask.any()
