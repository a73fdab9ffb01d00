"""What every transform shares: open the stored bytes, edit the pixels, encode the result.

Pixels are worked on as RGB, or RGBA when the source has alpha or an op adds
transparency; resampling runs on premultiplied alpha, so the colour of transparent
pixels never bleeds into the edges.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import Unprocessable
from .imaging import ACCEPTED_FORMATS, Limits
from .storage import ImageFormat

MAX_SIDE = 9999
DEFAULT_QUALITY = 90
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


@dataclass(frozen=True)
class Encoded:
    data: bytes
    format: ImageFormat
    width: int
    height: int


class Edit:
    """A transform that edits the pixels and keeps the source's format."""

    def watermark_ids(self) -> Sequence[str]:
        return ()

    def apply(
        self,
        source: bytes,
        source_format: ImageFormat,
        watermarks: Mapping[str, bytes],
        limits: Limits,
    ) -> Encoded:
        image = open_image(source, limits, "image")
        result = self.edit(image, watermarks, limits)
        fmt, quality = self.output(source_format)
        return Encoded(encode(result, fmt, quality), fmt, result.width, result.height)

    def edit(
        self, image: Image.Image, watermarks: Mapping[str, bytes], limits: Limits
    ) -> Image.Image:
        raise NotImplementedError

    def output(self, source_format: ImageFormat) -> tuple[ImageFormat, int]:
        return source_format, DEFAULT_QUALITY


def open_image(data: bytes, limits: Limits, field: str) -> Image.Image:
    """Stored bytes as an RGB or RGBA image, as uploaded: no EXIF turn, since stored
    images are served as they are and a transform must see the same pixels."""
    try:
        opened = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        # Checked before the pixels are read: the limits may have shrunk since upload.
        if opened.width * opened.height > limits.max_pixels:
            raise Unprocessable([f"{field}: must have at most {limits.max_pixels:,} pixels"])
        opened.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise Unprocessable([f"{field}: could not be read as a jpeg, png or webp image"]) from None
    image: Image.Image = opened
    if image.mode in _SIXTEEN_BIT_MODES:
        # convert() clips 16-bit values at 255 (a white picture); keep the top 8 bits.
        wide = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray(np.minimum(wide >> 8, 255).astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def encode(image: Image.Image, fmt: ImageFormat, quality: int = DEFAULT_QUALITY) -> bytes:
    """PNG (lossless, quality ignored), JPEG (laid on white) or WebP (alpha kept)."""
    buffer = io.BytesIO()
    if fmt == "jpeg":
        if image.mode == "RGBA":
            backdrop = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(backdrop, image)
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
    elif fmt == "webp":
        # Lossless alpha: a cut-out's edges stay exact at any quality.
        image.save(buffer, "WEBP", quality=quality, alpha_quality=100, method=4)
    else:
        image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def premultiplied(image: Image.Image, edit: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """`edit` (a resampling or filter) run on premultiplied alpha when the image has alpha."""
    if image.mode != "RGBA":
        return edit(image)
    return edit(image.convert("RGBa")).convert("RGBA")


def size_problem(
    label: str, width: int, height: int, source: tuple[int, int], limits: Limits
) -> str | None:
    """Why a `width` x `height` result is refused, or None. A side may pass MAX_SIDE only
    when the source already had one that long."""
    pixels = width * height
    if pixels > limits.max_pixels:
        return (
            f"{label}: the result would be {width}x{height}, {pixels:,} pixels; "
            f"at most {limits.max_pixels:,} are allowed"
        )
    if max(width, height) > max(MAX_SIDE, *source):
        return (
            f"{label}: the result would be {width}x{height}; "
            f"sides of at most {MAX_SIDE} pixels are allowed"
        )
    return None
