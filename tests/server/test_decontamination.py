"""server.decontamination: edge colours re-estimated where alpha is partial."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from server import decontamination, matting
from server.decontamination import decontaminate

Pixels = npt.NDArray[np.uint8]
RED = np.array([200, 40, 40])
GREEN = np.array([40, 200, 40])


@pytest.fixture(scope="module", autouse=True)
def warm() -> None:
    matting.warm_up()  # pymatting's numba code, loaded once for the module


def blended(side: int = 96) -> tuple[Pixels, Pixels]:
    """A red disc with a 12 px soft edge on green: the edge's colours are the two mixed
    in proportion to alpha, as a photo's are. Plus two faint specks far off."""
    y, x = np.mgrid[:side, :side]
    ramp = (side / 4 - np.hypot(y - side / 2, x - side / 2)) / 12 + 0.5
    a = np.clip(ramp, 0, 1)
    alpha = np.rint(a * 255).astype(np.uint8)
    alpha[1, 1] = 2
    alpha[side - 2, 1] = 1
    a = alpha / 255
    rgb = np.rint(a[..., None] * RED + (1 - a[..., None]) * GREEN).astype(np.uint8)
    return rgb, alpha


def distance_to_red(rgb: Pixels, where: npt.NDArray[np.bool_]) -> float:
    return float(np.abs(rgb[where].astype(np.int32) - RED).mean())


@pytest.mark.parametrize("working_pixels", [decontamination.DEFAULT_WORKING_PIXELS, 1024])
def test_soft_edges_take_the_subjects_colour(working_pixels: int) -> None:
    rgb, alpha = blended()
    out = decontaminate(rgb, alpha, working_pixels=working_pixels)
    edge = (alpha >= 26) & (alpha < 230)
    before, after = distance_to_red(rgb, edge), distance_to_red(out, edge)
    print(f"mean distance to the subject's colour: {before:.1f} -> {after:.1f}")
    # Measured: 55.9 -> 0.0 at full resolution, -> 0.3 with the box shrunk to 1024 pixels.
    assert before > 50
    assert after < 8
    # Opaque and transparent pixels keep their colours exactly.
    known = (alpha == 0) | (alpha == 255)
    assert (out[known] == rgb[known]).all()


def test_faint_specks_far_off_are_left_alone() -> None:
    rgb, alpha = blended()
    out = decontaminate(rgb, alpha)
    # Outside the soft band's box (alpha 1 and 2 do not stretch it).
    assert tuple(out[1, 1]) == tuple(rgb[1, 1])
    assert tuple(out[94, 1]) == tuple(rgb[94, 1])


def test_nothing_partial_is_nothing_to_do() -> None:
    rgb = np.full((20, 20, 3), 90, dtype=np.uint8)
    alpha = np.zeros((20, 20), dtype=np.uint8)
    alpha[5:15, 5:15] = 255
    alpha[0, 0] = 3  # only a faint speck is partial
    assert decontaminate(rgb, alpha) is rgb
