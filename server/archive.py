"""remove.bg's `format=zip`: the colours as color.jpg and the alpha as alpha.png.

The pair is smaller than an RGBA PNG of a photo (lossy colour, lossless alpha) and is
what remove.bg's clients recombine. The colours are the whole canvas's (not cleared
where alpha is 0, which JPEG would only spend bytes on) with the edges decontaminated by
the pipeline. Both members are stored, not deflated again: they are compressed already.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import numpy.typing as npt

MEDIA_TYPE = "application/zip"
COLOR_NAME = "color.jpg"
ALPHA_NAME = "alpha.png"
# A fixed time (zip's earliest) keeps the archive's bytes a function of the image alone.
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


def zip_of(color_jpeg: bytes, alpha_png: bytes) -> bytes:
    """The archive of the two encoded members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in ((COLOR_NAME, color_jpeg), (ALPHA_NAME, alpha_png)):
            info = zipfile.ZipInfo(name, date_time=_TIMESTAMP)
            info.external_attr = 0o644 << 16  # an ordinary file when unpacked
            archive.writestr(info, data)
    return buffer.getvalue()


def split(rgba: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The colour and alpha planes of an H x W x 4 array, each contiguous for its encoder."""
    return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
