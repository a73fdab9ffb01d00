"""Mask smoothing and compositing: the last steps before encoding, pure functions on arrays.

`post_process_mask` is rembg's optional mask smoothing; `composite` turns colours and an alpha
(the model's mask or `matting.refine_alpha`'s matte) into the cut-out, optionally laid over a
background colour.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

from .matting import BACKGROUND, FOREGROUND, RGB, Gray, check_gray, check_rgb

RGBA = npt.NDArray[np.uint8]  # H x W x 4

# A radius-1 disk: the structuring element rembg's post-processing opens the mask with.
_DISK_1 = ndimage.generate_binary_structure(2, 1)


def post_process_mask(mask: Gray) -> Gray:
    """Binary, smoothed mask: opening with a radius-1 disk, Gaussian blur (sigma 2), threshold.

    Follows rembg's `post_process` (OpenCV: MORPH_OPEN with a 3x3 ellipse, GaussianBlur 5x5
    sigma 2 with reflect-101 borders, `< 127 -> 0`), written with scipy.ndimage.
    """
    check_gray(mask, "mask")
    opened = ndimage.grey_opening(mask, footprint=_DISK_1, mode="nearest")
    # truncate=1.0 gives the 5x5 kernel of sigma 2; "mirror" is OpenCV's reflect-101.
    blurred = ndimage.gaussian_filter(
        opened.astype(np.float32), sigma=2.0, truncate=1.0, mode="mirror"
    )
    # OpenCV rounds the blurred uint8 image before comparing with 127.
    return np.where(np.rint(blurred) >= 127, FOREGROUND, BACKGROUND).astype(np.uint8)


def composite(rgb: RGB, alpha: Gray, bgcolor: tuple[int, ...] | None = None) -> RGBA:
    """The cut-out as straight (not premultiplied) RGBA.

    Without `bgcolor`, RGB is set to 0 where alpha is 0 (no colour hidden in transparent
    pixels). With `bgcolor` (r, g, b) or (r, g, b, a) the cut-out is laid over that colour
    (Porter-Duff "over"); an opaque colour gives an opaque image, and pixels where alpha is
    0 get the colour exactly.
    """
    check_rgb(rgb, alpha.shape)
    if bgcolor is None:
        # Pillow interleaves the four planes in C, then one multiply of each 32-bit
        # pixel by its 0/1 coverage clears the transparent ones: 12 ms at 4 MP, where
        # numpy's strided copies into an RGBA array took 29 and a boolean-mask
        # assignment (out[alpha == 0] = 0) 70 (benchmarks/PIPELINE.md).
        planes = (*Image.fromarray(rgb).split(), Image.fromarray(alpha))
        cutout = np.array(Image.merge("RGBA", planes))
        pixels = cutout.view(np.uint32)
        np.multiply(pixels, (alpha != 0)[..., None], out=pixels)
        return cutout
    out = np.empty((*alpha.shape, 4), dtype=np.uint8)
    color = _rgba(bgcolor)
    a = alpha.astype(np.float32) / 255
    under = (1 - a) * (color[3] / 255)  # weight of the background colour
    out_a = a + under
    # Straight colour = premultiplied / out_a; where out_a is 0 the numerator is 0 too.
    divisor = np.where(out_a > 0, out_a, 1)
    # Channel by channel: float temporaries of one plane, not of the whole image.
    for c in range(3):
        out[..., c] = np.rint((rgb[..., c] * a + under * color[c]) / divisor)
    out[..., 3] = np.rint(out_a * 255)
    return out


def _rgba(bgcolor: tuple[int, ...]) -> npt.NDArray[np.float32]:
    if len(bgcolor) not in (3, 4) or not all(0 <= int(c) <= 255 for c in bgcolor):
        raise ValueError(f"bgcolor must be 3 or 4 integers from 0 to 255, got {bgcolor!r}")
    return np.array([*bgcolor, 255][:4], dtype=np.float32)
