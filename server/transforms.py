"""The IMG Processing API's transforms: parse an op's JSON body, apply it, encode the result.

Pure code: the dialect loads the stored source (and any watermark images), calls
`parse(op, body).apply(...)` and stores the `Encoded` result as a new image, which has
the source's format except after `convert`. The ops live beside this module:
transform_geometry (resize, crop, rotate, mirror), transform_watermark, and here
convert, blur and modulate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, ImageFilter

from .imaging import Limits
from .modulation import Modulation, modulate
from .storage import ImageFormat
from .transform_base import DEFAULT_QUALITY, Edit, Encoded, premultiplied
from .transform_fields import Fields
from .transform_geometry import parse_crop, parse_mirror, parse_resize, parse_rotate
from .transform_watermark import parse_watermark

__all__ = ["OPS", "Encoded", "Transform", "parse"]

OPS = ("convert", "resize", "crop", "rotate", "mirror", "blur", "modulate", "watermark")


class Transform(Protocol):
    def watermark_ids(self) -> Sequence[str]:
        """Ids of the other stored images `apply` needs (the watermarks), else ()."""
        ...

    def apply(
        self,
        source: bytes,
        source_format: ImageFormat,
        watermarks: Mapping[str, bytes],
        limits: Limits,
    ) -> Encoded:
        """The new image; Unprocessable if the source rules the request out (a crop box
        past its edges, a result over `limits.max_pixels`)."""
        ...


def parse(op: str, body: Mapping[str, object]) -> Transform:
    """The transform `op` (one of OPS) with `body`'s fields. Unprocessable lists every bad
    field; unknown fields (and `name`, which is the dialect's) are ignored."""
    parser = _PARSERS.get(op)
    if parser is None:
        raise ValueError(f"unknown transform {op!r}")
    fields = Fields(body)
    transform = parser(fields)
    fields.check()
    return transform


def reader(op: str) -> Callable[[Fields], Transform]:
    """`op`'s parser, reading its body through the Fields it is given: the API
    description records what each op reads this way (dialects/imgproc_api.py)."""
    return _PARSERS[op]


# --- convert ---------------------------------------------------------------------------

_FORMATS: dict[str, ImageFormat] = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "webp": "webp"}


@dataclass(frozen=True)
class Convert(Edit):
    format: ImageFormat
    quality: int = DEFAULT_QUALITY  # jpeg and webp; png is lossless

    def edit(
        self, image: Image.Image, watermarks: Mapping[str, bytes], limits: Limits
    ) -> Image.Image:
        return image

    def output(self, source_format: ImageFormat) -> tuple[ImageFormat, int]:
        return self.format, self.quality


def parse_convert(fields: Fields) -> Convert:
    fmt = fields.required_choice("format", _FORMATS)
    quality = fields.optional_int("quality", 1, 100)
    return Convert(fmt, DEFAULT_QUALITY if quality is None else quality)


# --- blur ------------------------------------------------------------------------------

# sharp's blur() without a sigma is a light 3x3 box blur; a plainly visible blur is the
# more useful default for a call that names no strength.
DEFAULT_SIGMA = 3.0


@dataclass(frozen=True)
class Blur(Edit):
    sigma: float = DEFAULT_SIGMA

    def edit(
        self, image: Image.Image, watermarks: Mapping[str, bytes], limits: Limits
    ) -> Image.Image:
        # Pillow's GaussianBlur radius is the kernel's standard deviation.
        blur = ImageFilter.GaussianBlur(self.sigma)
        return premultiplied(image, lambda im: im.filter(blur))


def parse_blur(fields: Fields) -> Blur:
    sigma = fields.optional_number("sigma", 0.3, 1000)
    return Blur(DEFAULT_SIGMA if sigma is None else sigma)


# --- modulate --------------------------------------------------------------------------

_MULTIPLIERS = ("brightness", "saturation", "contrast", "exposure")


@dataclass(frozen=True)
class Modulate(Edit):
    modulation: Modulation

    def edit(
        self, image: Image.Image, watermarks: Mapping[str, bytes], limits: Limits
    ) -> Image.Image:
        pixels = np.asarray(image)
        rgb = modulate(np.ascontiguousarray(pixels[..., :3]), self.modulation)
        if image.mode == "RGBA":
            return Image.fromarray(np.dstack([rgb, pixels[..., 3]]), "RGBA")
        return Image.fromarray(rgb, "RGB")


def parse_modulate(fields: Fields) -> Modulate:
    multipliers = {name: fields.optional_number(name, 0) for name in _MULTIPLIERS}
    # An integer, as the hosted API (sharp) insists: 120.5 is refused there.
    hue = fields.optional_int("hue")
    lightness = fields.optional_number("lightness")
    if not any(fields.given(name) for name in (*_MULTIPLIERS, "hue", "lightness")):
        fields.add(
            "body",
            "must set at least one of brightness, saturation, hue, lightness, "
            "contrast and exposure",
        )
    chosen = {name: value for name, value in multipliers.items() if value is not None}
    return Modulate(
        Modulation(
            **chosen,
            hue=0.0 if hue is None else float(hue % 360),
            lightness=0.0 if lightness is None else lightness,
        )
    )


_PARSERS: dict[str, Callable[[Fields], Transform]] = {
    "convert": parse_convert,
    "resize": parse_resize,
    "crop": parse_crop,
    "rotate": parse_rotate,
    "mirror": parse_mirror,
    "blur": parse_blur,
    "modulate": parse_modulate,
    "watermark": parse_watermark,
}
