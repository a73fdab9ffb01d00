"""server.framing: the subject's box, the region of interest, crop with margin, scale
and position, on small synthetic arrays where every pixel is known."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from server.errors import BadRequest
from server.framing import (
    FOREGROUND_MIN_ALPHA,
    Box,
    crop_box,
    foreground_box,
    frame,
    margin_pixels,
    placement,
    resolve_region,
    scaled_box,
)
from server.option_text import CENTER, Length, Margin, Position, Region, parse_margin

Pixels = npt.NDArray[np.uint8]


def px(value: float) -> Length:
    return Length(value, "px")


def pc(value: float) -> Length:
    return Length(value, "%")


SUBJECT = Box(30, 10, 20, 15)


def subject(height: int = 60, width: int = 80, box: Box = SUBJECT) -> Pixels:
    """An alpha plane: 255 over `box`, specks of alpha 1 and 2 in the corners (as the
    model's mask has), 0 elsewhere."""
    alpha = np.zeros((height, width), dtype=np.uint8)
    alpha[box.top : box.bottom, box.left : box.right] = 255
    alpha[0, 0] = 1
    alpha[height - 1, width - 1] = 2
    alpha[0, width - 1] = 2
    return alpha


def colours(alpha: Pixels) -> Pixels:
    """Colours that say where each pixel came from: red = column, green = row."""
    height, width = alpha.shape
    y, x = np.mgrid[:height, :width]
    return np.stack([x, y, np.full_like(x, 7)], axis=-1).astype(np.uint8)


# --- the foreground box ----------------------------------------------------------------


def test_the_box_is_the_subjects_and_ignores_faint_specks() -> None:
    alpha = subject()
    assert foreground_box(alpha) == Box(30, 10, 20, 15)
    # Counting every non-zero pixel, the corner specks would stretch it to the frame.
    assert foreground_box(alpha, threshold=1) == Box(0, 0, 80, 60)


def test_the_threshold_is_inclusive_and_soft_edges_count() -> None:
    alpha = np.zeros((20, 20), dtype=np.uint8)
    alpha[5, 3] = FOREGROUND_MIN_ALPHA
    alpha[12, 15] = 128
    alpha[19, 19] = FOREGROUND_MIN_ALPHA - 1
    assert foreground_box(alpha) == Box(3, 5, 13, 8)


def test_an_empty_mask_has_no_box() -> None:
    assert foreground_box(np.zeros((10, 10), dtype=np.uint8)) is None
    assert foreground_box(np.full((10, 10), 9, dtype=np.uint8)) is None


def test_a_box_knows_its_far_edges() -> None:
    box = Box(3, 4, 10, 20)
    assert (box.right, box.bottom) == (13, 24)


# --- the region of interest -------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "box"),
    [
        (Region(pc(0), pc(0), pc(100), pc(100)), Box(0, 0, 200, 100)),
        (Region(px(10), px(20), px(110), px(70)), Box(10, 20, 100, 50)),
        (Region(pc(25), pc(10), pc(75), pc(90)), Box(50, 10, 100, 80)),
        (Region(px(0), pc(50), pc(50), px(100)), Box(0, 50, 100, 50)),
        # Past the image: clipped to it.
        (Region(px(150), px(0), px(900), px(900)), Box(150, 0, 50, 100)),
    ],
)
def test_regions_resolve_to_whole_pixels(region: Region, box: Box) -> None:
    assert resolve_region(region, 200, 100) == box


@pytest.mark.parametrize(
    "region",
    [
        Region(px(200), px(0), px(300), px(50)),  # wholly right of the image
        Region(pc(60), px(0), px(100), px(50)),  # x2 (100 px) left of x1 (120 px)
    ],
)
def test_a_region_with_no_pixel_of_the_image_is_refused(region: Region) -> None:
    with pytest.raises(BadRequest) as error:
        resolve_region(region, 200, 100)
    assert error.value.field == "roi"
    assert error.value.messages == ("roi: the region holds no pixel of the 200x100 image",)


def test_a_region_follows_the_picture_when_it_is_shrunk() -> None:
    assert scaled_box(Box(10, 20, 100, 50), 0.5, 100, 50) == Box(5, 10, 50, 25)
    # Never empty, never past the image.
    assert scaled_box(Box(199, 99, 1, 1), 0.1, 20, 10) == Box(19, 9, 1, 1)


# --- the margin --------------------------------------------------------------------------


def test_margins_in_pixels_and_percent_of_the_subject() -> None:
    box = Box(0, 0, 200, 100)
    assert margin_pixels(parse_margin("m", "30px"), box) == (30, 30, 30, 30)
    # % of the box's height for top and bottom, of its width for left and right.
    assert margin_pixels(parse_margin("m", "10%"), box) == (10, 20, 10, 20)
    assert margin_pixels(parse_margin("m", "1px 2px 3px 4px"), box) == (1, 2, 3, 4)
    assert margin_pixels(parse_margin("m", "5px 10%"), box) == (5, 20, 5, 20)


def test_each_side_is_clamped_to_half_the_subject_and_500_px() -> None:
    assert margin_pixels(parse_margin("m", "80%"), Box(0, 0, 200, 100)) == (50, 100, 50, 100)
    assert margin_pixels(parse_margin("m", "30px"), Box(0, 0, 40, 20)) == (10, 20, 10, 20)
    big = Box(0, 0, 3000, 2000)
    assert margin_pixels(parse_margin("m", "600px 40%"), big) == (500, 500, 500, 500)
    assert margin_pixels(parse_margin("m", "499px"), big) == (499, 499, 499, 499)


def test_the_crop_box_is_the_subject_plus_its_margin() -> None:
    margin = Margin(px(1), px(2), px(3), px(4))
    assert crop_box(Box(30, 10, 20, 15), margin) == Box(26, 9, 26, 19)


# --- crop ---------------------------------------------------------------------------------


def test_crop_without_margin_is_the_subjects_box_exactly() -> None:
    alpha = subject()
    rgb = colours(alpha)
    out_rgb, out_alpha = frame(rgb, alpha, Box(30, 10, 20, 15), True, Margin(), None, None)
    assert out_alpha.shape == (15, 20) and out_rgb.shape == (15, 20, 3)
    assert (out_alpha == 255).all()
    # The pixels are the image's own: column 30 and row 10 are the first.
    assert tuple(out_rgb[0, 0]) == (30, 10, 7)
    assert tuple(out_rgb[-1, -1]) == (49, 24, 7)


def test_crop_with_margin_is_exact_in_pixels() -> None:
    alpha = subject()
    rgb = colours(alpha)
    margin = parse_margin("crop_margin", "2px 3px 4px 5px")
    out_rgb, out_alpha = frame(rgb, alpha, Box(30, 10, 20, 15), True, margin, None, None)
    # 20 + 5 + 3 wide, 15 + 2 + 4 high; the subject 5 px from the left, 2 from the top.
    assert out_alpha.shape == (21, 28)
    assert foreground_box(out_alpha) == Box(5, 2, 20, 15)
    assert tuple(out_rgb[0, 0]) == (25, 8, 7)


def test_a_margin_past_the_image_edge_is_transparent_padding() -> None:
    alpha = subject(box=Box(0, 0, 20, 10))
    alpha[0, 0] = 255
    rgb = colours(alpha)
    out_rgb, out_alpha = frame(
        rgb, alpha, Box(0, 0, 20, 10), True, Margin(*[px(4)] * 4), None, None
    )
    assert out_alpha.shape == (18, 28)
    assert foreground_box(out_alpha) == Box(4, 4, 20, 10)
    assert (out_alpha[:4] == 0).all() and (out_alpha[:, :4] == 0).all()
    assert (out_rgb[:4] == 0).all()
    # Inside the image the crop holds the image's own pixels.
    assert tuple(out_rgb[4, 4]) == (0, 0, 7)


# --- scale and position ------------------------------------------------------------------


def test_scale_fits_the_subject_into_that_share_of_the_canvas() -> None:
    # 40 x 40 in 200 x 100 at 50%: the height binds (50 px), centred by default.
    assert placement(Box(10, 10, 40, 40), (200, 100), 0.5, CENTER) == Box(75, 25, 50, 50)
    # 100%: the subject touches the canvas on the binding axis.
    assert placement(Box(0, 0, 40, 20), (100, 100), 1.0, CENTER) == Box(0, 25, 100, 50)
    # 10% of a tall canvas: the width binds.
    assert placement(Box(0, 0, 50, 50), (100, 400), 0.1, CENTER) == Box(45, 195, 10, 10)


@pytest.mark.parametrize(
    ("position", "left_top"),
    [
        (Position(0.0, 0.0), (0, 0)),
        (Position(1.0, 1.0), (150, 50)),
        (Position(0.0, 1.0), (0, 50)),
        (Position(0.2, 0.8), (30, 40)),
        (CENTER, (75, 25)),
    ],
)
def test_position_is_a_share_of_the_free_space(
    position: Position, left_top: tuple[int, int]
) -> None:
    target = placement(Box(10, 10, 50, 50), (200, 100), None, position)
    assert (target.left, target.top) == left_top
    assert (target.width, target.height) == (50, 50)


def test_original_position_keeps_the_subject_where_it_was() -> None:
    assert placement(Box(10, 20, 50, 30), (200, 100), None, None) == Box(10, 20, 50, 30)
    # Scaled about its own centre, moved back in only as far as the canvas needs.
    assert placement(Box(10, 20, 40, 40), (200, 100), 0.2, None) == Box(20, 30, 20, 20)
    assert placement(Box(0, 0, 40, 40), (200, 100), 1.0, None) == Box(0, 0, 100, 100)


def test_frame_places_the_resized_subject_in_an_empty_canvas() -> None:
    alpha = subject()
    rgb = colours(alpha)
    box = Box(30, 10, 20, 15)
    out_rgb, out_alpha = frame(rgb, alpha, box, False, Margin(), 0.5, Position(0.0, 0.0))
    # The canvas is the image; 20 x 15 scaled to fit 40 x 30: exactly twice.
    assert out_alpha.shape == (60, 80)
    assert foreground_box(out_alpha) == Box(0, 0, 40, 30)
    # Only the subject was moved: the specks stayed behind.
    assert int(out_alpha.sum()) == 40 * 30 * 255
    assert (out_rgb[30:] == 0).all()


def test_frame_scales_within_the_cropped_canvas() -> None:
    alpha = subject()
    rgb = colours(alpha)
    box = Box(30, 10, 20, 15)
    margin = Margin(*[px(5)] * 4)
    _, out_alpha = frame(rgb, alpha, box, True, margin, 0.5, CENTER)
    # The canvas is the crop (30 x 25); the subject fills half of it on the binding axis.
    assert out_alpha.shape == (25, 30)
    found = foreground_box(out_alpha)
    assert found is not None
    assert (found.width, found.height) == (15, 11)  # 20 x 15 * min(15/20, 12.5/15) = 0.75
    assert abs(found.left - 7) <= 1 and abs(found.top - 7) <= 1


def test_position_alone_moves_the_subject_at_its_size() -> None:
    alpha = subject()
    rgb = colours(alpha)
    out_rgb, out_alpha = frame(
        rgb, alpha, Box(30, 10, 20, 15), False, Margin(), None, Position(1.0, 1.0)
    )
    assert foreground_box(out_alpha) == Box(60, 45, 20, 15)
    # Unscaled, the colours are the subject's own pixels, moved.
    assert tuple(out_rgb[45, 60]) == (30, 10, 7)
