"""Resizing in bands of rows on several cores, the same pixels as one `Image.resize`.

A lone request leaves a core idle while Pillow resizes the photo down for the model and
the mask back up (~45 and ~20 ms at 4 MP on one core, benchmarks/PIPELINE.md). Pillow's
resize is two passes, width then height (or the other way round); each is cut into bands
of rows here, computed exactly as the whole pass computes them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

from PIL import Image

from . import cores

# Below this many output pixels a band is not worth its hand-off (~0.1 ms).
MIN_BAND_PIXELS = 256 * 1024


def resize(
    image: Image.Image,
    size: tuple[int, int],
    resample: Image.Resampling,
    reducing_gap: float | None = None,
) -> Image.Image:
    """`image.resize(size, resample, reducing_gap=...)`, each of its two passes cut
    into up to one band per core."""
    width, height = size
    # Where Pillow would box-reduce first (a side shrunk 2 x reducing_gap or more),
    # its blocks would start at each band's edge; premultiplied modes take another
    # path in Pillow. Such rare cases, and small images, are resized whole.
    reduces = reducing_gap is not None and (
        image.width >= 2 * reducing_gap * width or image.height >= 2 * reducing_gap * height
    )
    small = width * height < 2 * MIN_BAND_PIXELS
    if cores.cores() < 2 or reduces or small or image.mode not in ("L", "RGB"):
        return image.resize(size, resample, reducing_gap=reducing_gap)
    # Pillow's separable resize rounds to 8 bits between its passes, so the order
    # matters; this is the order Pillow 13 takes (tests/server/test_resize.py):
    # vertical first only where the height shrinks, and more than the width does.
    if height < image.height and height * image.width < width * image.height:
        return _horizontal(_vertical(image, height, resample), width, resample)
    return _vertical(_horizontal(image, width, resample), height, resample)


def _horizontal(image: Image.Image, width: int, resample: Image.Resampling) -> Image.Image:
    """The width pass, in bands of rows: each row is resampled on its own."""
    if width == image.width:
        return image
    edges = _edges(image.height, width * image.height)

    def band(top: int, bottom: int) -> Image.Image:
        rows = image.crop((0, top, image.width, bottom))
        return rows.resize((width, bottom - top), resample)

    return _stitch(image.mode, (width, image.height), edges, band)


def _vertical(image: Image.Image, height: int, resample: Image.Resampling) -> Image.Image:
    """The height pass, in bands of output rows. Pillow computes output row `j` from
    the source rows around `box_top + (j + 0.5) * scale`, clipped to the whole source,
    so a band's box gives exactly the whole pass's rows, provided the box is exact:
    Pillow takes it as single-precision floats, so the edges are where the source row
    is a whole number, the multiples of `step` output rows."""
    if height == image.height:
        return image
    step = height // math.gcd(image.height, height)
    edges = [edge * step for edge in _edges(height // step, image.width * height)]

    def band(top: int, bottom: int) -> Image.Image:
        box = (0.0, top * image.height / height, float(image.width), bottom * image.height / height)
        return image.resize((image.width, bottom - top), resample, box=box)

    return _stitch(image.mode, (image.width, height), edges, band)


def _edges(units: int, pixels: int) -> list[int]:
    """Band edges over `units` rows (or steps of rows): one band per core at most,
    none under MIN_BAND_PIXELS."""
    bands = max(1, min(cores.cores(), units, pixels // MIN_BAND_PIXELS))
    return [units * k // bands for k in range(bands + 1)]


def _stitch(
    mode: str,
    size: tuple[int, int],
    edges: list[int],
    band: Callable[[int, int], Image.Image],
) -> Image.Image:
    spans = list(itertools.pairwise(edges))
    if len(spans) == 1:
        return band(*spans[0])
    # The calling thread does the first band itself rather than wait idle.
    later = [cores.pool().submit(band, *span) for span in spans[1:]]
    parts = [band(*spans[0]), *(future.result() for future in later)]
    out = Image.new(mode, size)
    for (top, _), part in zip(spans, parts, strict=True):
        out.paste(part, (0, top))
    return out
