"""Where the subject is and how it is framed: its bounding box in the alpha, the
region of interest, the crop with its margin, and its scale and place in a canvas.

Pure functions on arrays and boxes; the option values come from server/option_text.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from .errors import BadRequest
from .option_text import Margin, Position, Region

Gray = npt.NDArray[np.uint8]  # H x W
RGB = npt.NDArray[np.uint8]  # H x W x 3

# Scaling a subject up or down: Lanczos, as the model's input is resized.
_RESAMPLE = Image.Resampling.LANCZOS

# Alpha at or above this counts as the subject when measuring its box. Cut-outs carry
# specks of alpha 1-2 far from the subject (the model's faint halo, JPEG noise under
# the input's alpha); counting them would stretch the box to the picture's edges.
FOREGROUND_MIN_ALPHA = 10


@dataclass(frozen=True)
class Box:
    """A rectangle of whole pixels: its left and top edge and its size."""

    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.left + self.width

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.top + self.height


def foreground_box(alpha: Gray, threshold: int = FOREGROUND_MIN_ALPHA) -> Box | None:
    """The smallest box holding every pixel of alpha >= threshold; None when there is none.

    Rows first (a reduction along contiguous memory), then columns over those rows only:
    at 4 MP about one pass over the plane.
    """
    rows = np.flatnonzero(alpha.max(axis=1) >= threshold)
    if rows.size == 0:
        return None
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    columns = np.flatnonzero(alpha[top:bottom].max(axis=0) >= threshold)
    left, right = int(columns[0]), int(columns[-1]) + 1
    return Box(left, top, right - left, bottom - top)


# Each side's margin is at most this share of the subject's box on its axis, and this
# many pixels (remove.bg's documented ceiling).
MAX_MARGIN_SHARE = 0.5
MAX_MARGIN_PX = 500


def resolve_region(region: Region, width: int, height: int) -> Box:
    """The region in whole pixels of a width x height image, clipped to it.

    px values past the image are clipped; % is of the width (x) or height (y). Raises
    BadRequest on `roi` when nothing of the image is left inside it.
    """
    left = _clip(region.x1.resolve(width), width)
    right = _clip(region.x2.resolve(width), width)
    top = _clip(region.y1.resolve(height), height)
    bottom = _clip(region.y2.resolve(height), height)
    if right <= left or bottom <= top:
        raise BadRequest(
            f"roi: the region holds no pixel of the {width}x{height} image", field="roi"
        )
    return Box(left, top, right - left, bottom - top)


def _clip(value: float, size: int) -> int:
    return min(max(round(value), 0), size)


def scaled_box(box: Box, factor: float, width: int, height: int) -> Box:
    """`box` in an image scaled by `factor` to width x height (at least one pixel)."""
    left = min(round(box.left * factor), width - 1)
    top = min(round(box.top * factor), height - 1)
    right = max(min(round(box.right * factor), width), left + 1)
    bottom = max(min(round(box.bottom * factor), height), top + 1)
    return Box(left, top, right - left, bottom - top)


def margin_pixels(margin: Margin, box: Box) -> tuple[int, int, int, int]:
    """(top, right, bottom, left) in whole pixels around `box`: % of the box's height
    (top, bottom) or width (left, right), each side clamped to the ceilings above."""
    sides = (
        (margin.top, box.height),
        (margin.right, box.width),
        (margin.bottom, box.height),
        (margin.left, box.width),
    )
    top, right, bottom, left = (
        round(min(length.resolve(size), size * MAX_MARGIN_SHARE, MAX_MARGIN_PX))
        for length, size in sides
    )
    return top, right, bottom, left


def crop_box(box: Box, margin: Margin) -> Box:
    """The subject's box grown by its margin; it may reach past the image's edges (the
    pixels there are transparent), so the margin is exact whatever the subject's place."""
    top, right, bottom, left = margin_pixels(margin, box)
    return Box(box.left - left, box.top - top, box.width + left + right, box.height + top + bottom)


def is_framed(crop: bool, scale: float | None, position: Position | None) -> bool:
    return crop or scale is not None or position is not None


def placement(
    subject: Box, canvas: tuple[int, int], scale: float | None, position: Position | None
) -> Box:
    """Where the subject goes in a canvas of (width, height), `subject` being its box in
    that canvas's coordinates as it stands.

    scale: the subject is resized (aspect kept) to fit scale x the canvas on both axes;
    None keeps its size. position: fractions of the free space on each axis; None keeps
    the subject's centre where it was, moved only as far as needed to stay inside.
    """
    canvas_w, canvas_h = canvas
    width, height = subject.width, subject.height
    if scale is not None:
        factor = min(scale * canvas_w / subject.width, scale * canvas_h / subject.height)
        width = min(max(round(subject.width * factor), 1), canvas_w)
        height = min(max(round(subject.height * factor), 1), canvas_h)
    if position is None:
        left = round(subject.left + (subject.width - width) / 2)
        top = round(subject.top + (subject.height - height) / 2)
        left = min(max(left, 0), max(canvas_w - width, 0))
        top = min(max(top, 0), max(canvas_h - height, 0))
    else:
        left = round(position.x * (canvas_w - width))
        top = round(position.y * (canvas_h - height))
    return Box(left, top, width, height)


def frame(
    rgb: RGB,
    alpha: Gray,
    box: Box,
    crop: bool,
    margin: Margin,
    scale: float | None,
    position: Position | None,
) -> tuple[RGB, Gray]:
    """The colours and alpha of the framed output.

    The canvas is the image, or with `crop` the subject's box plus its margin. Without
    scale and position the canvas's content is the image's (a crop keeps what lies in
    it); with either, the subject's box alone is resized and placed in an empty canvas.
    """
    height, width = alpha.shape
    canvas = crop_box(box, margin) if crop else Box(0, 0, width, height)
    if scale is None and position is None:
        return _cut(rgb, canvas), _cut(alpha, canvas)
    subject = Box(box.left - canvas.left, box.top - canvas.top, box.width, box.height)
    target = placement(subject, (canvas.width, canvas.height), scale, position)
    out_rgb: RGB = np.zeros((canvas.height, canvas.width, 3), dtype=np.uint8)
    out_alpha: Gray = np.zeros((canvas.height, canvas.width), dtype=np.uint8)
    piece_rgb, piece_alpha = _resized(_cut(rgb, box), _cut(alpha, box), target)
    region = np.s_[target.top : target.bottom, target.left : target.right]
    out_rgb[region] = piece_rgb
    out_alpha[region] = piece_alpha
    return out_rgb, out_alpha


def _cut(array: npt.NDArray[np.uint8], box: Box) -> npt.NDArray[np.uint8]:
    """array[box], padded with zeros (transparent, black) where the box leaves the array."""
    height, width = array.shape[:2]
    if box.left >= 0 and box.top >= 0 and box.right <= width and box.bottom <= height:
        return array[box.top : box.bottom, box.left : box.right]
    out = np.zeros((box.height, box.width, *array.shape[2:]), dtype=np.uint8)
    top, left = max(box.top, 0), max(box.left, 0)
    bottom, right = min(box.bottom, height), min(box.right, width)
    if bottom > top and right > left:
        out[top - box.top : bottom - box.top, left - box.left : right - box.left] = array[
            top:bottom, left:right
        ]
    return out


def _resized(rgb: RGB, alpha: Gray, target: Box) -> tuple[RGB, Gray]:
    """The subject resized to the target's size, on premultiplied alpha (so the colour of
    transparent pixels does not bleed into the edge)."""
    size = (target.width, target.height)
    if size == (alpha.shape[1], alpha.shape[0]):
        return rgb, alpha
    image = Image.merge("RGBA", (*Image.fromarray(rgb).split(), Image.fromarray(alpha)))
    resized = np.asarray(image.convert("RGBa").resize(size, _RESAMPLE).convert("RGBA"))
    return np.ascontiguousarray(resized[..., :3]), np.ascontiguousarray(resized[..., 3])
