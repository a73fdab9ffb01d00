"""The transforms that move pixels: resize, crop, rotate and mirror."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from .colours import RGBA, TRANSPARENT
from .errors import Unprocessable
from .imaging import Limits
from .transform_base import MAX_SIDE, Edit, premultiplied, size_problem
from .transform_fields import Fields

# --- resize ----------------------------------------------------------------------------

Fit = Literal["fill", "contain", "cover"]
FITS: dict[str, Fit] = {"fill": "fill", "contain": "contain", "cover": "cover"}
# (x, y): the share of the spare room that goes before the image, 0 left/top, 1 right/bottom.
POSITIONS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "top": (0.5, 0.0),
    "right": (1.0, 0.5),
    "bottom": (0.5, 1.0),
    "left": (0.0, 0.5),
    "top-left": (0.0, 0.0),
    "top-right": (1.0, 0.0),
    "bottom-left": (0.0, 1.0),
    "bottom-right": (1.0, 1.0),
}
_LANCZOS = Image.Resampling.LANCZOS  # sharp's default kernel is lanczos3 too


@dataclass(frozen=True)
class Resize(Edit):
    width: int | None
    height: int | None
    fit: Fit = "fill"
    position: tuple[float, float] = (0.5, 0.5)
    # Transparent by default everywhere: a jpeg result is laid on white when encoded.
    letterbox: RGBA = TRANSPARENT

    def edit(
        self, image: Image.Image, watermarks: Mapping[str, bytes], limits: Limits
    ) -> Image.Image:
        width, height = self.target(image.size)
        label = "width" if self.width is not None else "height"
        problem = size_problem(label, width, height, image.size, limits)
        if problem:
            raise Unprocessable([problem])
        if self.fit == "contain":
            return self._contain(image, width, height)
        if self.fit == "cover":
            return self._cover(image, width, height)
        return premultiplied(image, lambda im: im.resize((width, height), _LANCZOS))

    def target(self, source: tuple[int, int]) -> tuple[int, int]:
        """The result's size: a missing side keeps the source's aspect ratio."""
        src_w, src_h = source
        if self.width is not None and self.height is not None:
            return self.width, self.height
        if self.width is not None:
            return self.width, max(1, round(src_h * self.width / src_w))
        if self.height is not None:
            return max(1, round(src_w * self.height / src_h)), self.height
        return source

    def _contain(self, image: Image.Image, width: int, height: int) -> Image.Image:
        scale = min(width / image.width, height / image.height)
        inner_w = min(width, max(1, round(image.width * scale)))
        inner_h = min(height, max(1, round(image.height * scale)))
        inner = premultiplied(image, lambda im: im.resize((inner_w, inner_h), _LANCZOS))
        opaque = image.mode == "RGB" and self.letterbox[3] == 255
        canvas = Image.new("RGB" if opaque else "RGBA", (width, height), self.letterbox)
        fx, fy = self.position
        # paste, not composite: the picture keeps its own alpha inside the letterbox.
        offset = (round((width - inner_w) * fx), round((height - inner_h) * fy))
        canvas.paste(inner.convert(canvas.mode), offset)
        return canvas

    def _cover(self, image: Image.Image, width: int, height: int) -> Image.Image:
        scale = max(width / image.width, height / image.height)
        # Resample only the part of the source that shows: no huge intermediate image.
        box_w, box_h = width / scale, height / scale
        fx, fy = self.position
        left, top = (image.width - box_w) * fx, (image.height - box_h) * fy
        box = (left, top, left + box_w, top + box_h)
        return premultiplied(image, lambda im: im.resize((width, height), _LANCZOS, box=box))


def parse_resize(fields: Fields) -> Resize:
    width = fields.optional_int("width", 1, MAX_SIDE)
    height = fields.optional_int("height", 1, MAX_SIDE)
    fit = fields.optional_choice("fit", FITS) or "fill"
    position = fields.optional_choice("position", POSITIONS) or (0.5, 0.5)
    letterbox = fields.optional_colour("letterbox_color") or TRANSPARENT
    if not fields.given("width") and not fields.given("height"):
        fields.add("body", "must set width, height or both")
    return Resize(width, height, fit, position, letterbox)


# --- crop ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crop(Edit):
    x1: int
    y1: int
    x2: int
    y2: int

    def edit(
        self, image: Image.Image, watermarks: Mapping[str, bytes], limits: Limits
    ) -> Image.Image:
        # x1 < x2 and y1 < y2 hold (parse checks), so only the far edges can overflow.
        problems = [
            f"{name}: must be at most the image's {side}, {limit}"
            for name, value, side, limit in (
                ("x1", self.x1, "width", image.width - 1),
                ("y1", self.y1, "height", image.height - 1),
                ("x2", self.x2, "width", image.width),
                ("y2", self.y2, "height", image.height),
            )
            if value > limit
        ]
        if problems:
            raise Unprocessable(problems)
        return image.crop((self.x1, self.y1, self.x2, self.y2))


def parse_crop(fields: Fields) -> Crop:
    crop = Crop(
        fields.required_int("x1", 0),
        fields.required_int("y1", 0),
        fields.required_int("x2", 1),
        fields.required_int("y2", 1),
    )
    for low, high, axis in ((crop.x1, crop.x2, "x"), (crop.y1, crop.y2, "y")):
        if fields.valid(f"{axis}1") and fields.valid(f"{axis}2") and high <= low:
            fields.add(f"{axis}2", f"must be greater than {axis}1")
    return crop


# --- rotate ----------------------------------------------------------------------------

_UNITS = {"degrees": "degrees", "radians": "radians"}
# Turns (clockwise quarter turns) done exactly, by moving pixels.
_QUARTER_TURNS = {
    1: Image.Transpose.ROTATE_270,  # Pillow's names count anticlockwise
    2: Image.Transpose.ROTATE_180,
    3: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class Rotate(Edit):
    degrees: float  # clockwise, as sharp (the hosted API) turns; in [0, 360)
    background: RGBA = TRANSPARENT  # a jpeg result is laid on white when encoded

    def edit(
        self, image: Image.Image, watermarks: Mapping[str, bytes], limits: Limits
    ) -> Image.Image:
        turns = round(self.degrees / 90)
        if abs(self.degrees - turns * 90) < 1e-9:
            transpose = _QUARTER_TURNS.get(turns % 4)
            return image.copy() if transpose is None else image.transpose(transpose)
        width, height = rotated_size(image.size, self.degrees)
        problem = size_problem("angle", width, height, image.size, limits)
        if problem:
            raise Unprocessable([problem])
        return self._turn(image, width, height)

    def _turn(self, image: Image.Image, width: int, height: int) -> Image.Image:
        theta = math.radians(self.degrees)
        cos, sin = math.cos(theta), math.sin(theta)
        # The output-to-input map: rotate back about the centres. With y pointing down, a
        # positive angle in this matrix turns the picture clockwise on screen.
        cx, cy = width / 2, height / 2
        data = (
            cos,
            sin,
            image.width / 2 - cos * cx - sin * cy,
            -sin,
            cos,
            image.height / 2 + sin * cx - cos * cy,
        )

        def turn(im: Image.Image) -> Image.Image:
            return im.transform(
                (width, height), Image.Transform.AFFINE, data, Image.Resampling.BICUBIC
            )

        # Premultiplied: the new corners come out (0, 0, 0, 0), edges partly covered.
        turned = np.asarray(turn(image.convert("RGBa")), dtype=np.float32)
        if self.background[3] == 0:
            return Image.fromarray(turned.astype(np.uint8), "RGBa").convert("RGBA")
        # Fill what the picture does not cover (a rotated all-white mask says how much),
        # so the picture's own transparent pixels stay transparent.
        coverage = np.asarray(turn(Image.new("L", image.size, 255)), dtype=np.float32) / 255
        alpha = self.background[3] / 255
        fill = np.array([*(c * alpha for c in self.background[:3]), self.background[3]])
        out = turned + fill.astype(np.float32) * (1 - coverage)[..., None]
        result = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGBa")
        if image.mode == "RGB" and self.background[3] == 255:
            return result.convert("RGB")
        return result.convert("RGBA")


def rotated_size(size: tuple[int, int], degrees: float) -> tuple[int, int]:
    """The canvas that holds `size` turned by `degrees` (the rotation's bounding box)."""
    theta = math.radians(degrees)
    cos, sin = abs(math.cos(theta)), abs(math.sin(theta))
    width, height = size
    # The epsilon keeps float noise (cos 60 = 0.5000000000000001) from adding a pixel.
    return (
        max(1, math.ceil(width * cos + height * sin - 1e-6)),
        max(1, math.ceil(width * sin + height * cos - 1e-6)),
    )


def parse_rotate(fields: Fields) -> Rotate:
    angle = fields.required_number("angle")
    unit = fields.optional_choice("unit", _UNITS) or "degrees"
    background = fields.optional_colour("background_color") or TRANSPARENT
    # fmod first: a huge angle in radians would overflow on its way to degrees.
    turn = 360.0 if unit == "degrees" else 2 * math.pi
    degrees = math.fmod(angle, turn)
    if unit == "radians":
        degrees = math.degrees(degrees)
    return Rotate(degrees % 360.0, background)


# --- mirror ----------------------------------------------------------------------------

_MIRRORS = {
    "horizontal": Image.Transpose.FLIP_LEFT_RIGHT,
    "vertical": Image.Transpose.FLIP_TOP_BOTTOM,
    "both": Image.Transpose.ROTATE_180,
}


@dataclass(frozen=True)
class Mirror(Edit):
    flip: Image.Transpose

    def edit(
        self, image: Image.Image, watermarks: Mapping[str, bytes], limits: Limits
    ) -> Image.Image:
        return image.transpose(self.flip)


def parse_mirror(fields: Fields) -> Mirror:
    return Mirror(fields.required_choice("mode", _MIRRORS))
