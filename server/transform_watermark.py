"""The watermark transform: other stored images laid over the source, once or tiled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from .errors import Unprocessable
from .imaging import Limits
from .transform_base import MAX_SIDE, Edit, open_image, premultiplied, size_problem
from .transform_fields import Fields

MAX_WATERMARKS = 10

Repetition = Literal["no_repeat", "repeat", "repeat_x", "repeat_y"]
# The SDK's spec spells them with underscores; hyphens (as in CSS) are taken too.
_REPETITIONS: dict[str, Repetition] = {
    "no_repeat": "no_repeat",
    "repeat": "repeat",
    "repeat_x": "repeat_x",
    "repeat_y": "repeat_y",
    "no-repeat": "no_repeat",
    "repeat-x": "repeat_x",
    "repeat-y": "repeat_y",
}
_SHOWN = ("no_repeat", "repeat", "repeat_x", "repeat_y")


@dataclass(frozen=True)
class Mark:
    id: str
    left: int = 0
    top: int = 0
    width: int | None = None
    height: int | None = None
    repetition: Repetition = "no_repeat"


@dataclass(frozen=True)
class Watermark(Edit):
    marks: tuple[Mark, ...]

    def watermark_ids(self) -> Sequence[str]:
        # One per watermark, repeats kept: item i is the id of `watermarks[i]`, so a
        # caller can name the right field when it finds no such image.
        return tuple(mark.id for mark in self.marks)

    def edit(
        self, image: Image.Image, watermarks: Mapping[str, bytes], limits: Limits
    ) -> Image.Image:
        base = image.convert("RGBA")
        for index, mark in enumerate(self.marks):
            label = f"watermarks[{index}]"
            data = watermarks.get(mark.id)
            if data is None:
                raise Unprocessable([f"{label}.id: no image with this id"])
            picture = _sized(open_image(data, limits, f"{label}.id"), mark, label, limits)
            layer = _layer(np.asarray(picture), base.size, mark)
            if layer is not None:
                base = Image.alpha_composite(base, Image.fromarray(layer, "RGBA"))
        # An opaque source stays opaque: every layer went over it.
        return base if image.mode == "RGBA" else base.convert("RGB")


def _sized(picture: Image.Image, mark: Mark, label: str, limits: Limits) -> Image.Image:
    """The watermark at its requested size (one side given: the aspect ratio kept)."""
    if mark.width is None and mark.height is None:
        return picture.convert("RGBA")
    if mark.width is not None:
        width = mark.width
        height = mark.height or max(1, round(picture.height * width / picture.width))
    else:
        height = mark.height or picture.height
        width = max(1, round(picture.width * height / picture.height))
    field = f"{label}.width" if mark.width is not None else f"{label}.height"
    problem = size_problem(field, width, height, picture.size, limits)
    if problem:
        raise Unprocessable([problem])
    return premultiplied(
        picture.convert("RGBA"), lambda im: im.resize((width, height), Image.Resampling.LANCZOS)
    )


def _layer(picture: np.ndarray, size: tuple[int, int], mark: Mark) -> np.ndarray | None:
    """A transparent (H, W, 4) layer with the watermark placed (and tiled) on it; None
    when none of it falls on the image."""
    width, height = size
    rows = _span(mark.top, picture.shape[0], height, mark.repetition in ("repeat", "repeat_y"))
    cols = _span(mark.left, picture.shape[1], width, mark.repetition in ("repeat", "repeat_x"))
    if rows is None or cols is None:
        return None
    layer = np.zeros((height, width, 4), dtype=np.uint8)
    (row_to, row_from), (col_to, col_from) = rows, cols
    layer[np.ix_(row_to, col_to)] = picture[np.ix_(row_from, col_from)]
    return layer


def _span(start: int, length: int, room: int, repeat: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Along one axis: the image's indices covered, and the watermark's index for each.
    Repeated, the tiles line up with `start` and run both ways to the edges (like CSS)."""
    if repeat:
        covered = np.arange(room)
        # Reduced first: `start` is any JSON integer, too big for numpy's int64.
        return covered, (covered - start % length) % length
    if start >= room:
        return None
    covered = np.arange(start, min(start + length, room))
    return covered, covered - start


def parse_watermark(fields: Fields) -> Watermark:
    items = fields.body.get("watermarks")
    if items is None:
        fields.add("watermarks", "is required")
        return Watermark(())
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_WATERMARKS:
        fields.add("watermarks", f"must be a list of 1 to {MAX_WATERMARKS} watermark objects")
        return Watermark(())
    marks = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            fields.add(f"watermarks[{index}]", "must be an object")
            continue
        mark = fields.child(item, f"watermarks[{index}].")
        marks.append(
            Mark(
                id=mark.required_string("id"),
                left=mark.optional_int("left", 0) or 0,
                top=mark.optional_int("top", 0) or 0,
                width=mark.optional_int("width", 1, MAX_SIDE),
                height=mark.optional_int("height", 1, MAX_SIDE),
                repetition=mark.optional_choice("repetition_mode", _REPETITIONS, _SHOWN)
                or "no_repeat",
            )
        )
    return Watermark(tuple(marks))
