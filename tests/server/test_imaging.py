from __future__ import annotations

import pytest

from server.errors import BadRequest
from server.imaging import Limits, check_size

LIMITS = Limits(min_side=1, min_pixels=4_096, max_pixels=4_194_304)


@pytest.mark.parametrize("size", [(4_194_304, 1), (2048, 2048), (4096, 1), (64, 64)])
def test_pixel_counts_inside_the_limits(size: tuple[int, int]) -> None:
    check_size(*size, LIMITS)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((4_194_305, 1), "at most 4,194,304 pixels, got 4,194,305"),
        ((4095, 1), "at least 4,096 pixels"),
    ],
)
def test_pixel_counts_outside_the_limits(size: tuple[int, int], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        check_size(*size, LIMITS)
