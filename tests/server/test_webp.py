"""The WebP writer: libwebp's colour, an exact alpha, a file every decoder reads."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from server.png import encode_png
from server.webp import _COLOUR_METHOD, _chunks, encode_webp
from tests.conftest import FIXTURES, reference_alpha


def cutout(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth photo with a soft-edged disc of alpha, some speckle, and hard zeros."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], axis=-1)
    radius = np.hypot(x - width / 2, y - height / 2)
    alpha = np.clip((min(width, height) / 3 - radius) * 20, 0, 255)
    alpha[rng.random(alpha.shape) < 0.01] = rng.integers(0, 256)
    rgba = np.dstack([rgb, alpha]).astype(np.uint8)
    rgba[rgba[..., 3] == 0, :3] = 0
    return rgba


def libwebp(rgba: np.ndarray, quality: int) -> bytes:
    """What Pillow writes itself: lossless alpha at its effort, colour at the served method."""
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(
        buffer, "WEBP", quality=quality, alpha_quality=100, method=_COLOUR_METHOD
    )
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(64, 64), (101, 67), (640, 480)])
def test_alpha_decodes_exactly(size: tuple[int, int]) -> None:
    rgba = cutout(*size)
    image = Image.open(io.BytesIO(encode_webp(rgba, 90)))
    assert image.format == "WEBP" and image.mode == "RGBA" and image.size == size
    np.testing.assert_array_equal(np.asarray(image)[..., 3], rgba[..., 3])


@pytest.mark.parametrize("quality", [10, 90])
def test_colour_is_libwebps_own(quality: int) -> None:
    # The colour chunk is the one Pillow would write for the whole cut-out: the
    # colour under transparent pixels is smoothed the same way, edges the same.
    rgba = cutout(320, 200, seed=1)
    ours, theirs = _chunks(encode_webp(rgba, quality)), _chunks(libwebp(rgba, quality))
    assert list(ours) == list(theirs) == [b"VP8X", b"ALPH", b"VP8 "]
    assert ours[b"VP8 "] == theirs[b"VP8 "]
    assert ours[b"VP8X"] == theirs[b"VP8X"]


def test_the_riff_size_and_padding_are_right() -> None:
    data = encode_webp(cutout(97, 61, seed=2), 90)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    offset = 12
    while offset < len(data):
        (size,) = struct.unpack_from("<I", data, offset + 4)
        offset += 8 + size + (size & 1)
    assert offset == len(data)  # every chunk, pad bytes included, ends where the file does


def test_an_opaque_image_has_no_alpha() -> None:
    rgba = cutout(80, 80)
    rgba[..., 3] = 255
    data = encode_webp(rgba, 90)
    assert b"ALPH" not in _chunks(data)
    assert Image.open(io.BytesIO(data)).mode == "RGB"


def test_a_real_cutout_stays_a_fraction_of_png_size() -> None:
    # The alpha is written at libwebp's lowest effort: larger than libwebp's own
    # choice, but still far below a PNG of the same pixels.
    photo = FIXTURES / "car-1.jpg"
    rgba = np.dstack([np.asarray(Image.open(photo).convert("RGB")), reference_alpha(photo)])
    rgba[rgba[..., 3] == 0, :3] = 0
    ours = len(encode_webp(rgba, 90))
    assert ours < len(encode_png(rgba, 1)) / 2
    assert ours < 2 * len(libwebp(rgba, 90))
