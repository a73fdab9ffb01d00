"""Edge colours: the subject's own colour re-estimated where alpha is partial.

A pixel of the soft edge (0 < alpha < 255) is a blend of subject and old background;
laid over another background as it stands, it keeps a fringe of the old one (a green
halo from a lawn, say). pymatting's multilevel estimate (`estimate_foreground_ml`,
Germer et al. 2020) solves for the subject's colour there. Alpha matting runs it over
its unknown band (server/matting.py); `decontaminate` offers it on the model's own mask.

pymatting is imported inside the functions, as in matting.py: its numba code compiles
on first use, which `matting.warm_up` moves to set-up time.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from .framing import FOREGROUND_MIN_ALPHA

Gray = npt.NDArray[np.uint8]  # H x W
RGB = npt.NDArray[np.uint8]  # H x W x 3

# The estimate's cost follows the box it is given. At 4 MP (the fixtures resized, their
# reference alpha: boxes of 1.6-2.0 MP) it took 0.3-0.6 s of CPU and a 150-170 MB peak
# at full resolution; shrunk to 1 MP, 0.3-0.55 s and 83 MB, but the colours then differ
# from the full-resolution estimate by 4-7 levels on average (the estimate moves them
# 23-39). So the box is shrunk only past this many pixels, the default max_pixels: only a
# server that accepts larger photos pays for it in accuracy rather than memory.
DEFAULT_WORKING_PIXELS = 4_194_304


def decontaminate(rgb: RGB, alpha: Gray, working_pixels: int = DEFAULT_WORKING_PIXELS) -> RGB:
    """`rgb` with every partly transparent pixel near the subject given the subject's
    estimated colour; other pixels are unchanged (the same array when there is none).

    The estimate covers the bounding box of the pixels with FOREGROUND_MIN_ALPHA <= alpha
    < 255, so that faint specks far away (alpha 1-2 is common in the model's mask) do not
    stretch it over the whole picture; specks outside it keep their colour, invisible at
    that alpha.
    """
    box = _soft_box(alpha)
    if box is None:
        return rgb
    rows, cols = box
    area = (rows.stop - rows.start) * (cols.stop - cols.start)
    if area <= working_pixels:
        return foreground_in_box(rgb, alpha, box)
    return _foreground_downscaled(rgb, alpha, box, math.sqrt(working_pixels / area))


def foreground_in_box(rgb: RGB, alpha: Gray, box: tuple[slice, slice]) -> RGB:
    """`rgb` with the partly transparent pixels of `box` replaced by pymatting's multilevel
    estimate of the subject's own colour, computed at full resolution over the box only.

    The estimate needs ~80 bytes per pixel it is given (330 MB for a whole 4 MP image). On
    a crop its coarse-to-fine pyramid differs, so colours differ from a whole-image run by
    1-2 levels along the edge, but not in accuracy: on synthetic composites with a known
    foreground (fixture photos over one another) the error was the same within +-0.4.
    """
    from pymatting import estimate_foreground_ml

    out = rgb.copy()
    a = alpha[box]
    soft = (a > 0) & (a < 255)
    if soft.any():
        estimate = estimate_foreground_ml(rgb[box] / np.float32(255), a / np.float32(255))
        out[box][soft] = np.rint(np.clip(estimate[soft], 0, 1) * 255).astype(np.uint8)
    return out


def _foreground_downscaled(rgb: RGB, alpha: Gray, box: tuple[slice, slice], factor: float) -> RGB:
    """As foreground_in_box, the estimate made on the box shrunk by `factor` (BOX filter,
    which averages alpha-weighted colours fairly) and brought back up bilinearly."""
    from pymatting import estimate_foreground_ml

    rows, cols = box
    height, width = rows.stop - rows.start, cols.stop - cols.start
    size = (max(round(width * factor), 1), max(round(height * factor), 1))
    small_rgb = np.asarray(Image.fromarray(rgb[box]).resize(size, Image.Resampling.BOX))
    small_alpha = np.asarray(Image.fromarray(alpha[box]).resize(size, Image.Resampling.BOX))
    estimate = estimate_foreground_ml(small_rgb / np.float32(255), small_alpha / np.float32(255))
    small = Image.fromarray(np.rint(np.clip(estimate, 0, 1) * 255).astype(np.uint8))
    full = np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))
    out = rgb.copy()
    a = alpha[box]
    soft = (a > 0) & (a < 255)
    out[box][soft] = full[soft]
    return out


def _soft_box(alpha: Gray) -> tuple[slice, slice] | None:
    """Slices of the smallest box holding FOREGROUND_MIN_ALPHA <= alpha < 255; None if none."""
    visible = alpha >= FOREGROUND_MIN_ALPHA
    soft = visible & (alpha < 255)
    rows = np.flatnonzero(soft.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(soft[rows[0] : rows[-1] + 1].any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
