"""What goes under the cut-out: a background image, fitted to cover the output, or a
colour (compositing.composite), or nothing.

The image is a client's upload (or what the outbound guard fetched): it is decoded under
the same limits as the photo, before the model runs, so a bad one fails fast.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from .compositing import composite
from .errors import BadRequest
from .imaging import Limits, Picture, decode

Gray = npt.NDArray[np.uint8]  # H x W
RGB = npt.NDArray[np.uint8]  # H x W x 3
RGBA = npt.NDArray[np.uint8]  # H x W x 4

FIELD = "bg_image"


def decode_background(data: bytes, limits: Limits) -> Picture:
    """The background image, decoded as the photo is; its refusals name `bg_image`."""
    try:
        return decode(data, limits)
    except BadRequest as error:
        messages = tuple(_renamed(message) for message in error.messages)
        raise BadRequest(*messages, field=FIELD) from None


def _renamed(message: str) -> str:
    prefix = "image: "
    return FIELD + ": " + message.removeprefix(prefix) if message.startswith(prefix) else message


def cover(background: Picture, width: int, height: int) -> RGBA:
    """The background scaled (aspect kept) to the smallest size that covers width x height,
    centred and cut to it, as straight RGBA (opaque where the image had no alpha)."""
    source_w, source_h = background.size
    factor = max(width / source_w, height / source_h)
    scaled_w = max(math.ceil(source_w * factor - 1e-9), width)
    scaled_h = max(math.ceil(source_h * factor - 1e-9), height)
    left = (scaled_w - width) // 2
    top = (scaled_h - height) // 2
    image = _image(background)
    if image.mode == "RGBA":
        image = image.convert("RGBa")
    resized = image.resize(
        (width, height),
        Image.Resampling.LANCZOS,
        box=(left / factor, top / factor, (left + width) / factor, (top + height) / factor),
    )
    return np.asarray(resized.convert("RGBA"))


def _image(picture: Picture) -> Image.Image:
    rgb = Image.fromarray(picture.rgb)
    if picture.alpha is None:
        return rgb
    return Image.merge("RGBA", (*rgb.split(), Image.fromarray(picture.alpha)))


def over_image(
    rgb: RGB, alpha: Gray, background: RGBA, bgcolor: tuple[int, ...] | None = None
) -> RGBA:
    """The cut-out laid over `background` (Porter-Duff "over", straight colours), itself
    laid over `bgcolor` first when one is given and the image has transparency."""
    if bgcolor is not None and int(background[..., 3].min()) < 255:
        background = composite(
            np.ascontiguousarray(background[..., :3]),
            np.ascontiguousarray(background[..., 3]),
            bgcolor,
        )
    out = np.empty((*alpha.shape, 4), dtype=np.uint8)
    a = alpha.astype(np.float32) / 255
    under = (1 - a) * (background[..., 3].astype(np.float32) / 255)
    out_a = a + under
    divisor = np.where(out_a > 0, out_a, 1)
    # Channel by channel: float temporaries of one plane, not of the whole image.
    for c in range(3):
        out[..., c] = np.rint((rgb[..., c] * a + under * background[..., c]) / divisor)
    out[..., 3] = np.rint(out_a * 255)
    return out
