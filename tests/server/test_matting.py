"""server.matting: trimap, mask post-processing, closed-form refinement and compositing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server import matting
from tests.conftest import FIXTURES

NAMES = ["anime-girl-1", "car-1", "cloth-1", "plants-1"]

# Mean |alpha - mask| over the whole image with the default options. Matting moves alpha
# only inside the unknown band (9-23% of these images); measured: 1.9 (anime-girl-1),
# 6.0 (car-1), 2.7 (cloth-1), 12.1 (plants-1, mostly band). A broken solve (band all 0,
# all 255, or noise) measures 10.2+, 20.3+, 11.1+ and 22.8+: the bounds sit between.
MAX_MAD_VS_MASK = {"anime-girl-1": 5.0, "car-1": 10.0, "cloth-1": 6.0, "plants-1": 17.0}


@pytest.fixture(scope="module")
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"rembg fixtures not found at {FIXTURES}"
    return FIXTURES


@pytest.fixture(scope="module")
def warm() -> None:
    # One numba load (or compile, ~40 s on a cold cache) for the whole module.
    matting.warm_up()


def load(fixtures_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The photo (plants-1.jpg is an RGBA PNG: convert) and IS-Net's mask for it."""
    rgb = np.asarray(Image.open(fixtures_dir / f"{name}.jpg").convert("RGB"))
    cutout = Image.open(fixtures_dir / f"{name}.isnet-general-use.png")
    return rgb, np.asarray(cutout.getchannel("A"))


@pytest.fixture(scope="module")
def refined(
    fixtures_dir: Path, warm: None
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """rgb, mask, alpha, foreground for every fixture, with the default options."""
    out = {}
    for name in NAMES:
        rgb, mask = load(fixtures_dir, name)
        result = matting.refine_alpha(rgb, mask)
        assert result is not None
        out[name] = (rgb, mask, *result)
    return out


# --- refine_alpha ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_refine_alpha_on_fixtures(refined: dict, name: str) -> None:
    rgb, mask, alpha, foreground = refined[name]
    assert alpha.dtype == np.uint8 and alpha.shape == mask.shape
    assert foreground.dtype == np.uint8 and foreground.shape == rgb.shape

    tri = matting.trimap(mask, 240, 10, 10)
    assert np.all(alpha[tri == 255] == 255)
    assert np.all(alpha[tri == 0] == 0)
    mad = np.abs(alpha.astype(np.int16) - mask).mean()
    assert mad <= MAX_MAD_VS_MASK[name], f"{name}: MAD {mad:.2f} vs mask"

    # The band really was matted: partial alpha is present, not just the mask copied.
    band = tri == 128
    assert np.count_nonzero((alpha[band] > 0) & (alpha[band] < 255)) > 0.2 * band.sum()
    assert not np.array_equal(alpha[band], mask[band])
    # Colours change only where alpha is partial.
    solid = (alpha == 0) | (alpha == 255)
    np.testing.assert_array_equal(foreground[solid], rgb[solid])


def test_two_colour_composite_is_unmixed(warm: None) -> None:
    """A red disc with a soft edge over green: the colour-line model holds exactly, so the
    matte recovers the true alpha and the edge loses its green. Measured: alpha off by 0.4
    levels (the sloppy mask: 15.6), foreground off red by 0.0 (the photo: 60.9)."""
    y, x = np.mgrid[:80, :80]
    true_alpha = np.clip((26 - np.hypot(y - 40, x - 40)) / 10, 0, 1)
    red, green = np.array([200, 30, 30]), np.array([30, 200, 30])
    rgb = np.rint(true_alpha[..., None] * red + (1 - true_alpha[..., None]) * green)
    rgb = rgb.astype(np.uint8)
    mask = np.rint(np.clip(true_alpha * 1.3 - 0.15, 0, 1) * 255).astype(np.uint8)  # a sloppy model

    result = matting.refine_alpha(rgb, mask, erode_size=2)
    assert result is not None
    alpha, foreground = result
    soft = (true_alpha > 0.05) & (true_alpha < 0.95)
    assert np.abs(alpha[soft] - true_alpha[soft] * 255).mean() < 2
    assert np.abs(mask[soft] - true_alpha[soft] * 255).mean() > 10  # so the matte did it
    edge = foreground[soft].astype(np.int16)
    assert np.abs(edge - red).mean() < 0.1 * np.abs(rgb[soft].astype(np.int16) - red).mean()


def test_full_resolution_matches_pymatting(fixtures_dir: Path, warm: None) -> None:
    """With the band inside the budget, the block-wise solve is estimate_alpha_cf exactly."""
    import pymatting

    rgb, mask = load(fixtures_dir, "car-1")
    rgb, mask = rgb[100:260, 40:240], mask[100:260, 40:240]  # keeps the test quick
    result = matting.refine_alpha(rgb, mask)
    assert result is not None
    tri = matting.trimap(mask, 240, 10, 10)
    expected = pymatting.estimate_alpha_cf(rgb / 255.0, tri / 255.0)
    difference = np.abs(result[0] - np.rint(expected * 255))
    # Rounding and CG's looser tolerance (1e-5 against pymatting's 1e-7) only.
    assert difference.max() <= 2 and difference.mean() < 0.1


def test_reduced_resolution_stays_close(fixtures_dir: Path, warm: None) -> None:
    """Half car-1's band as budget: downscaled solve + guided upsampling. Measured against
    the full-resolution matte: MAD 1.0 over the image, 5.5 on the band (1/4 of the band:
    2.6 and 14.9; bilinear upsampling instead of the guided filter: worse, see matting.py)."""
    rgb, mask = load(fixtures_dir, "car-1")
    full = matting.refine_alpha(rgb, mask)
    reduced = matting.refine_alpha(rgb, mask, max_unknown_pixels=16_384)
    assert full is not None and reduced is not None
    tri = matting.trimap(mask, 240, 10, 10)
    assert np.all(reduced[0][tri == 255] == 255)
    assert np.all(reduced[0][tri == 0] == 0)
    difference = np.abs(reduced[0].astype(np.int16) - full[0])
    assert difference.mean() <= 1.5
    assert difference[tri == 128].mean() <= 8.0


def test_working_pixels_also_bounds_the_solve(fixtures_dir: Path, warm: None) -> None:
    # 16k pixels for the band's ~100k-pixel box: measured MAD 3.1 vs full resolution.
    rgb, mask = load(fixtures_dir, "car-1")
    full = matting.refine_alpha(rgb, mask)
    result = matting.refine_alpha(rgb, mask, working_pixels=16_384)
    assert full is not None and result is not None
    tri = matting.trimap(mask, 240, 10, 10)
    assert np.all(result[0][tri == 255] == 255) and np.all(result[0][tri == 0] == 0)
    assert np.abs(result[0].astype(np.int16) - full[0]).mean() <= 4.5


@pytest.mark.parametrize("value", [0, 255])
def test_no_foreground_or_no_background_gives_none(value: int) -> None:
    rgb = np.full((40, 50, 3), 120, dtype=np.uint8)
    mask = np.full((40, 50), value, dtype=np.uint8)
    assert matting.refine_alpha(rgb, mask) is None


def test_flat_colour_image_with_a_mask_that_erodes_away_gives_none() -> None:
    rgb = np.full((40, 50, 3), 200, dtype=np.uint8)
    mask = np.zeros((40, 50), dtype=np.uint8)
    mask[18:22, 20:30] = 255  # 4 px tall: erode_size 10 removes all foreground
    assert matting.refine_alpha(rgb, mask) is None


def test_flat_colour_image_is_matted_without_error(warm: None) -> None:
    # No colour to go on: every 3x3 window is singular but for epsilon. Must not raise.
    rgb = np.full((60, 60, 3), 200, dtype=np.uint8)
    mask = np.zeros((60, 60), dtype=np.uint8)
    mask[15:45, 15:45] = 255
    mask[12:48, 12:48] = np.maximum(mask[12:48, 12:48], 128)
    result = matting.refine_alpha(rgb, mask, erode_size=2)
    assert result is not None
    alpha, _ = result
    assert np.all(alpha[20:40, 20:40] == 255) and np.all(alpha[:5] == 0)


def test_no_unknown_band_returns_the_trimap() -> None:
    rgb = np.zeros((20, 20, 3), dtype=np.uint8)
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[:, 10:] = 255
    result = matting.refine_alpha(rgb, mask, erode_size=0)
    assert result is not None
    np.testing.assert_array_equal(result[0], mask)
    np.testing.assert_array_equal(result[1], rgb)


def test_refine_alpha_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        matting.refine_alpha(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11), np.uint8))


# --- trimap ------------------------------------------------------------------------------


def test_trimap_thresholds_are_strict() -> None:
    mask = np.array([[0, 9, 10, 11, 239, 240, 241, 255]], dtype=np.uint8)
    tri = matting.trimap(mask, fg_threshold=240, bg_threshold=10, erode_size=0)
    np.testing.assert_array_equal(tri, [[0, 0, 128, 128, 128, 128, 255, 255]])


def square_mask(size: int = 100, lo: int = 30, hi: int = 70) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[lo:hi, lo:hi] = 255
    return mask


def test_trimap_erode_size_zero_keeps_the_regions() -> None:
    mask = square_mask()
    np.testing.assert_array_equal(matting.trimap(mask, 240, 10, 0), mask)


@pytest.mark.parametrize("erode", [1, 3, 10])
def test_trimap_erosion_shrinks_each_region_by_erode_size(erode: int) -> None:
    tri = matting.trimap(square_mask(), 240, 10, erode)
    row = tri[50]  # a row through the square's middle: edges at 30 and 70
    assert set(np.flatnonzero(row == 255)) == set(range(30 + erode, 70 - erode))
    unknown = set(np.flatnonzero(row == 128))
    assert unknown == set(range(30 - erode, 30 + erode)) | set(range(70 - erode, 70 + erode))
    assert tri.shape == (100, 100) and set(np.unique(tri)) == {0, 128, 255}


def test_trimap_erosion_is_round_along_diagonals() -> None:
    # A diagonal edge x + y = 100: a disk of radius r moves it by r, i.e. by r * sqrt(2)
    # along a row. (A square structuring element would move it by 2r along a row.)
    yy, xx = np.mgrid[:100, :100]
    mask = np.where(xx + yy < 100, 255, 0).astype(np.uint8)
    tri = matting.trimap(mask, 240, 10, 10)
    fg_end = np.flatnonzero(tri[50] == 255).max() + 1
    assert abs((50 - fg_end) - 10 * np.sqrt(2)) <= 1.5


def test_trimap_frame_does_not_erode() -> None:
    mask = np.zeros((50, 50), dtype=np.uint8)
    mask[25:] = 255  # the subject is cut off by the bottom of the frame
    tri = matting.trimap(mask, 240, 10, 5)
    assert np.all(tri[30:] == 255) and np.all(tri[:20] == 0)
    assert np.all(tri[20:30] == 128)


def test_trimap_rejects_crossed_thresholds() -> None:
    with pytest.raises(ValueError):
        matting.trimap(square_mask(), fg_threshold=10, bg_threshold=240, erode_size=0)


# --- post_process_mask -------------------------------------------------------------------


def boundary_pixels(binary: np.ndarray) -> int:
    edges = (binary[1:, :] != binary[:-1, :]).sum() + (binary[:, 1:] != binary[:, :-1]).sum()
    return int(edges)


def test_post_process_mask() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:120, :120]
    blob = np.hypot(yy - 60, xx - 60) < 35
    noisy = blob ^ (rng.random(blob.shape) < 0.01)  # isolated speckles, in and out
    mask = np.where(noisy, 255, 0).astype(np.uint8)
    mask[5, 5] = 255  # a lone speckle far from the blob

    out = matting.post_process_mask(mask)
    assert out.dtype == np.uint8 and out.shape == mask.shape
    assert set(np.unique(out)) <= {0, 255}
    assert out[5, 5] == 0
    assert np.all(out[np.hypot(yy - 60, xx - 60) < 30] == 255)  # the blob stays
    assert np.all(out[np.hypot(yy - 60, xx - 60) > 40] == 0)  # the speckles go
    assert boundary_pixels(out == 255) < boundary_pixels(mask == 255) / 2


def test_post_process_mask_keeps_a_clean_mask() -> None:
    mask = square_mask()
    out = matting.post_process_mask(mask)
    assert np.abs(out.astype(np.int16) - mask).mean() < 1  # corners round off, no more


# --- composite ---------------------------------------------------------------------------


@pytest.fixture
def picture() -> tuple[np.ndarray, np.ndarray]:
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    alpha = np.zeros((8, 8), dtype=np.uint8)
    alpha[2:6, 2:6] = 255
    alpha[2:6, 6] = 128
    return rgb, alpha


def test_composite_cutout(picture: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, alpha = picture
    out = matting.composite(rgb, alpha, None)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 4)
    np.testing.assert_array_equal(out[..., 3], alpha)
    assert np.all(out[alpha == 0, :3] == 0)
    np.testing.assert_array_equal(out[alpha > 0, :3], rgb[alpha > 0])


def test_composite_over_opaque_colour(picture: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, alpha = picture
    out = matting.composite(rgb, alpha, (10, 200, 30))
    assert np.all(out[..., 3] == 255)
    assert np.all(out[alpha == 0, :3] == [10, 200, 30])
    np.testing.assert_array_equal(out[alpha == 255, :3], rgb[alpha == 255])
    a = 128 / 255
    expected = np.rint(rgb[2:6, 6] * a + np.array([10, 200, 30]) * (1 - a))
    assert np.abs(out[2:6, 6, :3] - expected).max() <= 1


def test_composite_over_translucent_colour(picture: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, alpha = picture
    out = matting.composite(rgb, alpha, (10, 200, 30, 100))
    assert np.all(out[alpha == 0] == [10, 200, 30, 100])
    np.testing.assert_array_equal(out[alpha == 255, :3], rgb[alpha == 255])
    assert np.all(out[alpha == 255, 3] == 255)
    # "over": 128 + 100 * (1 - 128/255) = 177.8
    assert np.all(out[2:6, 6, 3] == 178)


def test_composite_over_transparent_colour_is_the_cutout(
    picture: tuple[np.ndarray, np.ndarray],
) -> None:
    rgb, alpha = picture
    out = matting.composite(rgb, alpha, (10, 200, 30, 0))
    np.testing.assert_array_equal(out, matting.composite(rgb, alpha, None))


def test_composite_rejects_a_bad_colour(picture: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ValueError):
        matting.composite(*picture, (1, 2))
