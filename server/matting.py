"""Alpha matting: trimap, closed-form alpha, foreground colours; pure functions on arrays.

`refine_alpha` turns the model's mask into a closed-form alpha matte (Levin et al. 2008, via
pymatting) plus foreground colours, at a bounded cost. Closed-form matting solves one sparse
linear system over the trimap's unknown band; its cost grows with the number of unknown
pixels (faster than linearly on images with a wide band, such as foliage), and pymatting's
`estimate_alpha_cf` also allocates ~400 bytes for every pixel of the image, known or not.
So here:

* the Laplacian is assembled block by block over the unknown band only (exactly the rows
  `estimate_alpha_cf` would use), so memory follows the band, not the image;
* the system is solved at a reduced working resolution when the band holds more than
  `max_unknown_pixels` pixels, or the band's bounding box more than `working_pixels`;
* the low-resolution alpha is brought back to full size with a guided filter (He et al.,
  "Guided Image Filtering"; the local linear model alpha = a.I + b is the very assumption of
  closed-form matting), and the trimap's known regions are re-imposed at full resolution;
* foreground colours are estimated at full resolution, on the band's bounding box only
  (server/decontamination.py).

pymatting is imported inside the functions that need it: its numba code takes ~40 s to
compile on a cold cache, which belongs in `warm_up`, not in `import server.matting`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage, sparse

from .decontamination import foreground_in_box

Gray = npt.NDArray[np.uint8]  # H x W
RGB = npt.NDArray[np.uint8]  # H x W x 3
Floats = npt.NDArray[np.floating]

FOREGROUND = 255
BACKGROUND = 0
UNKNOWN = 128

# Cost bounds (see the module docstring and benchmarks/matting_bench.py for the figures).
# 65,536 unknown pixels solve in ~0.5-2.5 s on one core, depending on how wide the band is.
DEFAULT_WORKING_PIXELS = 1_048_576
DEFAULT_MAX_UNKNOWN_PIXELS = 65_536

# pymatting's default, so that a solve at full resolution gives estimate_alpha_cf's result.
_EPSILON = 1e-7
# pymatting stops CG at 1e-7; 1e-5 moves alpha by at most 2 levels (mean < 0.2) on the
# fixtures and saves ~40% of the CG time. The cap is a safety net: with the incomplete-
# Cholesky preconditioner CG takes 2-20 steps here, and it starts from the model's mask.
_CG_RTOL = 1e-5
_CG_MAXITER = 200
# pymatting's ichol tries a diagonal shift of 0 first; on wide bands (foliage) that attempt
# fails (and prints a warning) after costing as much as the successful one. Starting at
# 1e-4 never failed on the fixtures and costs 1-2 more CG steps elsewhere.
_ICHOL_SHIFTS = (1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
# The Laplacian row of a pixel depends on the 3x3 windows that contain it, hence on pixels
# up to 2 px away: a block's rows are exact when its image has a 2 px halo.
_HALO = 2
_BLOCK = 64
# The guided filter that upsamples alpha: 3x3 windows at working resolution. Band MAD vs
# full resolution on the fixtures at a 32k budget: bilinear 3.4-16.4, guided eps 1e-3
# 3.6-15.8, 1e-4 2.4-15.5, 1e-5 1.9-15.5 (best), 1e-6 1.9-15.5 but worse at 8k.
_GUIDE_RADIUS = 1
_GUIDE_EPS = 1e-5
# A radius-1 disk (a 3x3 cross): one step of the diamond in `_erode`.
_DISK_1 = ndimage.generate_binary_structure(2, 1)


def trimap(mask: Gray, fg_threshold: int, bg_threshold: int, erode_size: int) -> Gray:
    """255 where mask > fg_threshold, 0 where mask < bg_threshold, 128 elsewhere.

    Each known region is first eroded by `erode_size` px (0: not eroded), so that the
    unknown band covers the whole soft edge the model may have got wrong. The image frame
    does not erode a region: a subject cut off by the frame stays opaque there.
    """
    check_gray(mask, "mask")
    if not 0 <= bg_threshold <= fg_threshold + 1 or not 0 <= fg_threshold <= 255:
        raise ValueError(f"thresholds out of order: bg {bg_threshold}, fg {fg_threshold}")
    if erode_size < 0:
        raise ValueError(f"erode_size must be >= 0, got {erode_size}")
    out = np.full(mask.shape, UNKNOWN, dtype=np.uint8)
    out[_erode(mask > fg_threshold, erode_size)] = FOREGROUND
    out[_erode(mask < bg_threshold, erode_size)] = BACKGROUND
    return out


def refine_alpha(
    rgb: RGB,
    mask: Gray,
    fg_threshold: int = 240,
    bg_threshold: int = 10,
    erode_size: int = 10,
    working_pixels: int = DEFAULT_WORKING_PIXELS,
    max_unknown_pixels: int = DEFAULT_MAX_UNKNOWN_PIXELS,
) -> tuple[Gray, RGB] | None:
    """Closed-form alpha matte and foreground colours for `rgb`, seeded by the model's mask.

    Returns (alpha, foreground), or None when the trimap has no foreground or no background
    pixels (closed-form matting has nothing to propagate then) or the image is under 3 px
    on a side (no 3x3 window fits): the caller keeps the plain mask.
    Alpha is exactly 0 or 255 in the trimap's known regions. Foreground equals `rgb` except
    where 0 < alpha < 255, where it is the estimated colour of the subject alone, so edges
    carry no colour of the old background.

    Cost: the solve works on at most `max_unknown_pixels` unknown pixels and a working image
    of at most `working_pixels` pixels, downscaling the band's bounding box when needed.
    """
    check_gray(mask, "mask")
    check_rgb(rgb, mask.shape)
    tri = trimap(mask, fg_threshold, bg_threshold, erode_size)
    if min(tri.shape) < 3 or not (tri == FOREGROUND).any() or not (tri == BACKGROUND).any():
        return None
    band = tri == UNKNOWN
    count = int(np.count_nonzero(band))
    alpha = tri.copy()
    if count == 0:
        return alpha, rgb.copy()
    # Everything outside the band's bounding box is known: work on the box only.
    scale = min(1.0, math.sqrt(max_unknown_pixels / count))
    box = _bounding_box(band, margin=math.ceil((_HALO + 1) / scale))
    alpha[box] = _alpha_in_box(
        rgb[box], mask[box], tri[box], scale, working_pixels, max_unknown_pixels
    )
    return alpha, foreground_in_box(rgb, alpha, box)


def warm_up() -> None:
    """Import pymatting and run every numba function `refine_alpha` uses, on a tiny image.

    numba compiles (cold cache, ~40 s) or loads (warm cache) pymatting's code on import and
    first call; this moves that to set-up time. `refine_alpha` calls the pieces of
    `estimate_alpha_cf` (cf_laplacian, ichol, cg) and `estimate_foreground_ml`.
    """
    import pymatting  # noqa: F401  (the import itself compiles or loads the numba code)

    y, x = np.mgrid[:48, :48]
    mask = np.clip(255 - 32 * (np.hypot(y - 24, x - 24) - 12), 0, 255).astype(np.uint8)
    rgb = np.stack([mask, 255 - mask, np.full_like(mask, 90)], axis=-1)
    refine_alpha(rgb, mask, erode_size=2)


# --- trimap helpers ---------------------------------------------------------------------


def _erode(region: npt.NDArray[np.bool_], radius: int) -> npt.NDArray[np.bool_]:
    """Erode by a disk of `radius` px, approximated by an octagon; the frame does not erode.

    An exact Euclidean erosion (distance transform) costs ~0.3 s per region at 4 MP; a square
    (half-width a) followed by a diamond (radius b) costs ~0.05 s. With a = 0.414 r and
    b = r - a the octagon reaches exactly r along the axes and the diagonals.
    """
    if radius <= 0 or region.all() or not region.any():
        return region
    square = round(radius * (math.sqrt(2) - 1))
    diamond = radius - square
    out = region
    if square > 0:
        # mode="nearest" repeats the edge pixels: the frame does not erode.
        out = ndimage.minimum_filter(out.view(np.uint8), size=2 * square + 1, mode="nearest")
        out = out.view(np.bool_)
    if diamond > 0:
        out = ndimage.binary_erosion(out, _DISK_1, iterations=diamond, border_value=1)
    return out


def _bounding_box(band: npt.NDArray[np.bool_], margin: int) -> tuple[slice, slice]:
    """Slices of the smallest box holding `band`, grown by `margin` px (clipped to the image)."""
    rows = np.flatnonzero(band.any(axis=1))
    cols = np.flatnonzero(band.any(axis=0))
    h, w = band.shape
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, h)),
        slice(max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, w)),
    )


# --- alpha -------------------------------------------------------------------------------


def _alpha_in_box(
    rgb: RGB, mask: Gray, tri: Gray, scale: float, working_pixels: int, max_unknown: int
) -> Gray:
    """Alpha for one box of the image: solved at working resolution, upsampled, clamped."""
    h, w = tri.shape
    scale = min(scale, math.sqrt(working_pixels / (h * w)))
    small_tri, size = _working_trimap(tri, scale, max_unknown)
    alpha: Floats
    if size == (w, h):
        alpha = _solve_closed_form(rgb, small_tri, mask)
    else:
        small_rgb = _resize(rgb, size, Image.Resampling.BOX)
        small_mask = _resize(mask, size, Image.Resampling.BOX)
        small_alpha = _solve_closed_form(small_rgb, small_tri, small_mask)
        alpha = _guided_upsample(small_rgb, small_alpha, rgb)
    out: Gray = np.rint(np.clip(alpha, 0, 1) * 255).astype(np.uint8)
    # The full-resolution trimap is the contract: known stays exactly 0 or 255.
    out[tri == FOREGROUND] = FOREGROUND
    out[tri == BACKGROUND] = BACKGROUND
    return out


def _working_trimap(tri: Gray, scale: float, max_unknown: int) -> tuple[Gray, tuple[int, int]]:
    """The trimap at working resolution (and its PIL size) with at most `max_unknown` unknowns.

    Downscaling widens the band a little (a working pixel straddling the band is unknown),
    so the scale is shrunk again until the unknown count fits.
    """
    h, w = tri.shape
    for _ in range(8):
        # Never below 3 px: the Laplacian's 3x3 windows must fit.
        size = (min(w, max(3, round(w * scale))), min(h, max(3, round(h * scale))))
        small = tri if size == (w, h) else _shrink_trimap(tri, size)
        count = int(np.count_nonzero(small == UNKNOWN))
        if count <= max_unknown or max(size) <= 3:
            break
        scale *= 0.98 * math.sqrt(max_unknown / count)
    return small, size


def _shrink_trimap(tri: Gray, size: tuple[int, int]) -> Gray:
    """Downscaled trimap where a pixel is known only if all it covers is known (same label)."""
    out = np.full((size[1], size[0]), UNKNOWN, dtype=np.uint8)
    for label in (FOREGROUND, BACKGROUND):
        coverage = _resize((tri == label).astype(np.float32), size, Image.Resampling.BOX)
        out[coverage > 0.999] = label
    return out


def _solve_closed_form(rgb: RGB, tri: Gray, guess: Gray) -> npt.NDArray[np.float64]:
    """Closed-form alpha (unclipped in the band), as pymatting's estimate_alpha_cf computes it.

    Same Laplacian, preconditioner and solver, but the system is assembled over the band
    only, and CG starts from the model's mask and stops at a looser tolerance.
    """
    from pymatting import cg, ichol

    image = rgb.astype(np.float64) / 255
    unknown = tri == UNKNOWN
    laplacian, rhs = _band_system(image, unknown, tri == FOREGROUND)
    start = guess[unknown].astype(np.float64) / 255
    preconditioner = ichol(laplacian, shifts=_ICHOL_SHIFTS)
    values = cg(laplacian, rhs, x0=start, M=preconditioner, rtol=_CG_RTOL, maxiter=_CG_MAXITER)
    alpha: npt.NDArray[np.float64] = (tri == FOREGROUND).astype(np.float64)
    alpha[unknown] = values
    return alpha


def _band_system(
    image: npt.NDArray[np.float64],
    unknown: npt.NDArray[np.bool_],
    foreground: npt.NDArray[np.bool_],
) -> tuple[sparse.csr_matrix, npt.NDArray[np.float64]]:
    """L_U and -R m of the closed-form system L_U x = -R m, built block by block.

    pymatting's cf_laplacian allocates 25 values and 25 indices for every pixel it is given;
    feeding it only blocks (with a halo) that hold unknown pixels keeps memory to the band:
    <1 KB per unknown pixel at the peak (the incomplete Cholesky factor adds 0.7-1.6 KB).
    """
    h, w = unknown.shape
    flat = np.flatnonzero(unknown)
    position = np.full(h * w, -1, dtype=np.int32)  # pixel -> row of L_U
    position[flat] = np.arange(flat.size, dtype=np.int32)
    is_fg = foreground.ravel()
    rhs = np.zeros(flat.size)
    rows, cols, values = [], [], []
    for y0 in range(0, h, _BLOCK):
        for x0 in range(0, w, _BLOCK):
            if not unknown[y0 : y0 + _BLOCK, x0 : x0 + _BLOCK].any():
                continue
            row_pixel, col_pixel, value = _block_rows(image, unknown, y0, x0)
            row, col = position[row_pixel], position[col_pixel]
            to_unknown = col >= 0
            rows.append(row[to_unknown])
            cols.append(col[to_unknown])
            values.append(value[to_unknown])
            # R m: the Laplacian's weights from each unknown pixel to the known foreground.
            to_fg = is_fg[col_pixel]
            np.subtract.at(rhs, row[to_fg], value[to_fg])
    laplacian = sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(flat.size, flat.size),
    )
    return laplacian, rhs


def _block_rows(
    image: npt.NDArray[np.float64], unknown: npt.NDArray[np.bool_], y0: int, x0: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Matting-Laplacian rows of the unknown pixels in one block: (row pixel, column pixel,
    value), pixels as flat indices into the whole image."""
    from pymatting import cf_laplacian

    h, w = unknown.shape
    top, left = max(y0 - _HALO, 0), max(x0 - _HALO, 0)
    bottom, right = min(y0 + _BLOCK + _HALO, h), min(x0 + _BLOCK + _HALO, w)
    laplacian = cf_laplacian(
        image[top:bottom, left:right],
        epsilon=_EPSILON,
        radius=1,
        is_known=~unknown[top:bottom, left:right],
    )
    ys, xs = np.nonzero(unknown[y0 : y0 + _BLOCK, x0 : x0 + _BLOCK])
    ys += y0
    xs += x0
    width = right - left
    entries = laplacian[(ys - top) * width + (xs - left)].tocoo()
    # cf_laplacian leaves zero-valued placeholders for neighbours outside the block.
    keep = entries.data != 0
    local_row, local_col = entries.row[keep], entries.col[keep].astype(np.int64)
    row = ys[local_row] * w + xs[local_row]
    col = (local_col // width + top) * w + local_col % width + left
    return row, col, entries.data[keep]


def _guided_upsample(small_rgb: RGB, small_alpha: Floats, rgb: RGB) -> npt.NDArray[np.float32]:
    """Alpha at the size of `rgb`: guided-filter coefficients found at working resolution,
    upsampled bilinearly, applied to the full-resolution colours (He & Sun's fast guided
    filter). Edges follow the full-resolution image instead of being blurred by the zoom."""
    guide = small_rgb.astype(np.float32) / np.float32(255)
    a, b = _guided_coefficients(guide, small_alpha.astype(np.float32))
    size = (rgb.shape[1], rgb.shape[0])
    out = _resize(b, size, Image.Resampling.BILINEAR)
    for channel in range(3):
        coefficient = _resize(a[channel], size, Image.Resampling.BILINEAR)
        out += coefficient * rgb[..., channel] * np.float32(1 / 255)
    return out


def _guided_coefficients(
    guide: npt.NDArray[np.float32], target: npt.NDArray[np.float32]
) -> tuple[list[npt.NDArray[np.float32]], npt.NDArray[np.float32]]:
    """Mean-filtered a (3 planes) and b of the colour guided filter: in each window,
    target ~ a . guide + b by regularised least squares."""

    def mean(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        filtered: npt.NDArray[np.float32] = ndimage.uniform_filter(
            x, size=2 * _GUIDE_RADIUS + 1, mode="nearest"
        )
        return filtered

    mean_i = [mean(guide[..., c]) for c in range(3)]
    mean_t = mean(target)
    cov = [mean(guide[..., c] * target) - mean_i[c] * mean_t for c in range(3)]
    var = {
        (i, j): mean(guide[..., i] * guide[..., j]) - mean_i[i] * mean_i[j]
        for i in range(3)
        for j in range(i, 3)
    }
    for c in range(3):
        var[c, c] += _GUIDE_EPS
    a = _solve_symmetric_3x3(var, cov)
    b = mean_t - sum(a[c] * mean_i[c] for c in range(3))
    return [mean(x) for x in a], mean(b)


def _solve_symmetric_3x3(
    m: dict[tuple[int, int], npt.NDArray[np.float32]], v: list[npt.NDArray[np.float32]]
) -> list[npt.NDArray[np.float32]]:
    """Per-pixel solution of M x = v for symmetric positive-definite 3x3 M (upper triangle
    given), by cofactors: ~5x faster than a batched np.linalg.solve and no 3x3 copies."""
    c00 = m[1, 1] * m[2, 2] - m[1, 2] ** 2
    c01 = m[0, 2] * m[1, 2] - m[0, 1] * m[2, 2]
    c02 = m[0, 1] * m[1, 2] - m[0, 2] * m[1, 1]
    c11 = m[0, 0] * m[2, 2] - m[0, 2] ** 2
    c12 = m[0, 1] * m[0, 2] - m[0, 0] * m[1, 2]
    c22 = m[0, 0] * m[1, 1] - m[0, 1] ** 2
    inv_det = np.float32(1) / (m[0, 0] * c00 + m[0, 1] * c01 + m[0, 2] * c02)
    return [
        (c00 * v[0] + c01 * v[1] + c02 * v[2]) * inv_det,
        (c01 * v[0] + c11 * v[1] + c12 * v[2]) * inv_det,
        (c02 * v[0] + c12 * v[1] + c22 * v[2]) * inv_det,
    ]


# --- small helpers -----------------------------------------------------------------------


def _resize(
    array: npt.NDArray[Any], size: tuple[int, int], resample: Image.Resampling
) -> npt.NDArray[Any]:
    """PIL resize of a uint8 gray/RGB or a float32 single-channel array to `size` (w, h)."""
    # np.array, not np.asarray: the result must be writable.
    return np.array(Image.fromarray(array).resize(size, resample))


def check_gray(mask: np.ndarray, name: str) -> None:
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"{name} must be a uint8 H x W array, got {mask.dtype} {mask.shape}")


def check_rgb(rgb: np.ndarray, shape: tuple[int, ...]) -> None:
    if rgb.dtype != np.uint8 or rgb.shape != (*shape[:2], 3):
        raise ValueError(f"rgb must be uint8 {(*shape[:2], 3)}, got {rgb.dtype} {rgb.shape}")
