"""server.backdrop: the background image, decoded, fitted to cover, laid under the cut-out."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from server.backdrop import cover, decode_background, over_image
from server.errors import BadRequest
from server.imaging import Limits, Picture

Pixels = npt.NDArray[np.uint8]
LIMITS = Limits(min_side=1, min_pixels=1, max_pixels=10_000)


def stripes(width: int, height: int, vertical: bool = True) -> Picture:
    """Three equal stripes, red, green and blue, across the width (or down the height)."""
    axis = np.arange(width if vertical else height) * 3 // (width if vertical else height)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    line = palette[axis]
    rgb = np.broadcast_to(line[None] if vertical else line[:, None], (height, width, 3))
    return Picture(np.ascontiguousarray(rgb), None)


def test_a_wide_background_is_scaled_to_the_height_and_its_middle_kept() -> None:
    # 90 x 30 over 30 x 30: already the height; the middle third (green) is kept.
    out = cover(stripes(90, 30), 30, 30)
    assert out.shape == (30, 30, 4)
    assert (out[..., 3] == 255).all()
    assert np.abs(out[..., :3].astype(int) - [0, 255, 0]).max() <= 2


def test_a_small_tall_background_is_scaled_up_to_cover() -> None:
    # 10 x 90 over 40 x 40: x4 to 40 x 360, the middle 40 rows (of the green third) kept.
    out = cover(stripes(10, 90, vertical=False), 40, 40)
    assert out.shape == (40, 40, 4)
    assert np.abs(out[..., :3].astype(int) - [0, 255, 0]).max() <= 2


def test_the_backgrounds_aspect_is_kept() -> None:
    # A 20 x 10 checker of 2 px squares over 40 x 40: x4 (to 80 x 40), squares of 8 px.
    checker = (np.indices((10, 20)) // 2).sum(axis=0) % 2 * 255
    rgb = np.repeat(checker.astype(np.uint8)[..., None], 3, axis=2)
    out = cover(Picture(rgb, None), 40, 40)
    edges = np.flatnonzero(np.diff(out[20, :, 0] > 127))
    assert len(edges) >= 4 and (np.diff(edges) == 8).all(), edges


def test_a_background_with_alpha_keeps_it() -> None:
    alpha = np.full((20, 20), 100, dtype=np.uint8)
    out = cover(Picture(np.full((20, 20, 3), 50, dtype=np.uint8), alpha), 10, 10)
    assert (out[..., 3] == 100).all()
    assert (np.abs(out[..., :3].astype(int) - 50) <= 1).all()


def test_the_cutout_is_laid_over_the_image() -> None:
    rgb = np.full((2, 3, 3), [200, 10, 10], dtype=np.uint8)
    alpha = np.array([[255, 0, 128], [255, 0, 128]], dtype=np.uint8)
    background = np.zeros((2, 3, 4), dtype=np.uint8)
    background[...] = [0, 0, 250, 255]
    out = over_image(rgb, alpha, background)
    assert tuple(out[0, 0]) == (200, 10, 10, 255)
    assert tuple(out[0, 1]) == (0, 0, 250, 255)
    assert tuple(out[0, 2]) == (100, 5, 130, 255)  # 200, 10, 10 and 0, 0, 250 halved


def test_a_transparent_background_goes_over_the_colour_first() -> None:
    rgb = np.zeros((1, 1, 3), dtype=np.uint8)
    alpha = np.zeros((1, 1), dtype=np.uint8)
    background = np.array([[[0, 0, 0, 0]]], dtype=np.uint8)
    assert tuple(over_image(rgb, alpha, background, (9, 8, 7))[0, 0]) == (9, 8, 7, 255)
    assert tuple(over_image(rgb, alpha, background)[0, 0])[3] == 0


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_the_background_decodes_as_the_photo_does() -> None:
    picture = decode_background(encoded(Image.new("RGB", (20, 10), (1, 2, 3))), LIMITS)
    assert picture.size == (20, 10)
    assert tuple(picture.rgb[0, 0]) == (1, 2, 3)


NOISE = encoded(Image.effect_noise((40, 40), 50).convert("RGB"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an image", "bg_image: must be a jpeg, png or webp image"),
        (encoded(Image.new("RGB", (200, 100))), "bg_image: must have at most 10,000 pixels"),
        (NOISE[: len(NOISE) // 2], "bg_image: the png is truncated or corrupt"),
    ],
)
def test_a_bad_background_is_refused_naming_bg_image(data: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as error:
        decode_background(data, LIMITS)
    assert error.value.field == "bg_image"
    assert error.value.messages[0].startswith(message)
