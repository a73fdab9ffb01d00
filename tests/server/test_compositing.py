"""server.compositing: rembg's mask smoothing and the cut-out's compositing."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from server import compositing

Mask = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float64]

# --- post_process_mask -------------------------------------------------------------------


def cross_neighbours(image: Mask) -> Mask:
    """Each pixel and its 4 neighbours (the radius-1 disk), the frame repeating edge pixels."""
    p = np.pad(image, 1, mode="edge")
    return np.stack([p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])


def gaussian_blur(image: Mask, sigma: float, radius: int) -> Floats:
    """Separable Gaussian of (2 radius + 1) taps in float64, borders reflected without
    repeating the edge pixel (OpenCV's reflect-101, numpy's "reflect")."""
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    weights /= weights.sum()
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(radius, radius) if i == axis else (0, 0) for i in (0, 1)]
        padded = np.pad(out, pad, mode="reflect")
        n = out.shape[axis]
        out = sum(
            (w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(weights)),
            start=np.zeros_like(out),
        )
    return out


def rembg_post_process(mask: Mask, threshold: int = 127, sigma: float = 2.0) -> Mask:
    """rembg's post_process written out here, independently of scipy.ndimage: opening with
    a radius-1 disk (erode, then dilate), a 5x5 Gaussian of sigma 2, rounding, `>= 127`.
    `threshold` and `sigma` exist so the test can show other values answer differently;
    a sigma over 2.49 gets 7 taps, as scipy's truncate=1.0 would give it."""
    opened = cross_neighbours(cross_neighbours(mask).min(axis=0)).max(axis=0)
    blurred = gaussian_blur(opened, sigma, radius=int(sigma + 0.5))
    return np.where(np.rint(blurred) >= threshold, 255, 0).astype(np.uint8)


def stripes() -> Mask:
    """Vertical stripes (so only the horizontal blur matters), each wider than the kernel.
    The blurred value along a row, by hand (5 taps of sigma 2: weights .2514, .2218,
    .1525): 127 on the first plateau, 126 on the second, 50 + 205 * .3743 = 126.73 just
    before the step 50 -> 255 (x = 39), 40 + 215 * .3743 = 120.48 just before 40 -> 255
    (x = 59). Opening keeps all of it: no plateau or step is thinner than the disk."""
    profile = [127] * 10 + [0] * 10 + [126] * 10 + [50] * 10 + [255] * 10 + [40] * 10 + [255] * 10
    return np.tile(np.array(profile, dtype=np.uint8), (8, 1))


# (x, expected at sigma 2 and threshold 127, what a broken variant gives there and why)
CHOSEN_PIXELS = [
    (4, 255),  # 127 exactly: >= 128 (or > 127) gives 0
    (24, 0),  # 126 exactly: >= 126 gives 255
    (39, 255),  # 126.73: rounds to 127; no rounding (126.73 < 127) or sigma 1.5 (122.6) give 0
    (59, 0),  # 120.48: sigma 2.5 (7 taps, 127.1) gives 255
]


@pytest.mark.parametrize(("x", "expected"), CHOSEN_PIXELS)
def test_post_process_mask_at_chosen_pixels(x: int, expected: int) -> None:
    out = compositing.post_process_mask(stripes())
    assert np.all(out[:, x] == expected)


@pytest.mark.parametrize(
    ("threshold", "sigma", "pixels_that_change"),
    [(126, 2.0, [24]), (128, 2.0, [4, 39]), (127, 1.5, [39]), (127, 2.5, [59])],
)
def test_chosen_pixels_tell_threshold_and_sigma_apart(
    threshold: int, sigma: float, pixels_that_change: list[int]
) -> None:
    # The chosen pixels have power: a threshold of 126/128 or a sigma of 1.5/2.5 flips them.
    right = rembg_post_process(stripes())
    wrong = rembg_post_process(stripes(), threshold, sigma)
    flipped = [x for x, _ in CHOSEN_PIXELS if wrong[0, x] != right[0, x]]
    assert flipped == pixels_that_change


def test_post_process_mask_matches_an_independent_reference() -> None:
    # Binary blobs with speckles and some grey pixels, so the opening, the blur's borders and
    # the rounding all matter. (Seed 0: no blurred value within 1.5e-4 of a .5 rounding tie,
    # so float32 inside the code and float64 here agree.) Thresholds 126/128 change 3-4
    # pixels here, sigma 1.5 24, sigma 2.5 4.
    rng = np.random.default_rng(0)
    mask = np.where(rng.random((40, 50)) < 0.5, 255, 0)
    mask = np.where(rng.random((40, 50)) < 0.3, rng.integers(0, 256, (40, 50)), mask)
    mask = mask.astype(np.uint8)
    np.testing.assert_array_equal(compositing.post_process_mask(mask), rembg_post_process(mask))


def boundary_pixels(binary: npt.NDArray[np.bool_]) -> int:
    edges = (binary[1:, :] != binary[:-1, :]).sum() + (binary[:, 1:] != binary[:, :-1]).sum()
    return int(edges)


def test_post_process_mask_removes_speckles_and_keeps_the_blob() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:120, :120]
    blob = np.hypot(yy - 60, xx - 60) < 35
    noisy = blob ^ (rng.random(blob.shape) < 0.01)  # isolated speckles, in and out
    mask = np.where(noisy, 255, 0).astype(np.uint8)
    mask[5, 5] = 255  # a lone speckle far from the blob

    out = compositing.post_process_mask(mask)
    assert out.dtype == np.uint8 and out.shape == mask.shape
    assert set(np.unique(out)) <= {0, 255}
    assert out[5, 5] == 0
    assert np.all(out[np.hypot(yy - 60, xx - 60) < 30] == 255)  # the blob stays
    assert np.all(out[np.hypot(yy - 60, xx - 60) > 40] == 0)  # the speckles go
    assert boundary_pixels(out == 255) < boundary_pixels(mask == 255) / 2


def test_post_process_mask_rejects_a_colour_image() -> None:
    with pytest.raises(ValueError, match="mask must be a uint8 H x W array"):
        compositing.post_process_mask(np.zeros((8, 8, 3), dtype=np.uint8))


# --- composite ---------------------------------------------------------------------------


@pytest.fixture
def picture() -> tuple[Mask, Mask]:
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    alpha = np.zeros((8, 8), dtype=np.uint8)
    alpha[2:6, 2:6] = 255
    alpha[2:6, 6] = 128
    return rgb, alpha


def test_composite_cutout(picture: tuple[Mask, Mask]) -> None:
    rgb, alpha = picture
    out = compositing.composite(rgb, alpha, None)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 4)
    np.testing.assert_array_equal(out[..., 3], alpha)
    assert np.all(out[alpha == 0, :3] == 0)
    np.testing.assert_array_equal(out[alpha > 0, :3], rgb[alpha > 0])


def test_composite_cutout_of_strided_planes() -> None:
    # What matting.refine_alpha may hand over: views, not contiguous arrays; every
    # alpha level, so each pixel's coverage (zero or not) is checked.
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)[::2, ::-1]
    alpha = np.tile(np.arange(256, dtype=np.uint8), (40, 3))[::2, 100:160]
    out = compositing.composite(rgb, alpha, None)
    expected = np.dstack([rgb * (alpha != 0)[..., None], alpha])
    np.testing.assert_array_equal(out, expected)


def test_composite_over_opaque_colour(picture: tuple[Mask, Mask]) -> None:
    rgb, alpha = picture
    out = compositing.composite(rgb, alpha, (10, 200, 30))
    assert np.all(out[..., 3] == 255)
    assert np.all(out[alpha == 0, :3] == [10, 200, 30])
    np.testing.assert_array_equal(out[alpha == 255, :3], rgb[alpha == 255])
    a = 128 / 255
    expected = np.rint(rgb[2:6, 6] * a + np.array([10, 200, 30]) * (1 - a))
    assert np.abs(out[2:6, 6, :3] - expected).max() <= 1


def test_composite_over_translucent_colour(picture: tuple[Mask, Mask]) -> None:
    rgb, alpha = picture
    out = compositing.composite(rgb, alpha, (10, 200, 30, 100))
    assert np.all(out[alpha == 0] == [10, 200, 30, 100])
    np.testing.assert_array_equal(out[alpha == 255, :3], rgb[alpha == 255])
    assert np.all(out[alpha == 255, 3] == 255)
    # "over": 128 + 100 * (1 - 128/255) = 177.8
    assert np.all(out[2:6, 6, 3] == 178)


def test_composite_over_transparent_colour_is_the_cutout(picture: tuple[Mask, Mask]) -> None:
    rgb, alpha = picture
    out = compositing.composite(rgb, alpha, (10, 200, 30, 0))
    np.testing.assert_array_equal(out, compositing.composite(rgb, alpha, None))


@pytest.mark.parametrize("bgcolor", [(1, 2), (1, 2, 3, 4, 5), (0, 0, 256), (-1, 0, 0)])
def test_composite_rejects_a_bad_colour(
    picture: tuple[Mask, Mask], bgcolor: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match="bgcolor must be 3 or 4 integers from 0 to 255"):
        compositing.composite(*picture, bgcolor)
