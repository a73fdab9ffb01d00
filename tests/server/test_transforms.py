"""The IMG Processing transforms: body validation (every bad field listed) and the
pixels, sizes and formats each op produces, read back with Pillow."""

from __future__ import annotations

import io
import math
import random
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from server.errors import Unprocessable
from server.imaging import Limits
from server.storage import ImageFormat
from server.transform_geometry import rotated_size
from server.transforms import OPS, Encoded, parse

LIMITS = Limits(min_side=1, min_pixels=1, max_pixels=4_194_304)
Array = npt.NDArray[np.uint8]

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def save(pixels: Array | Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def read(encoded: Encoded) -> Image.Image:
    image = Image.open(io.BytesIO(encoded.data))
    image.load()
    assert image.format is not None
    assert image.format.lower() == encoded.format
    assert image.size == (encoded.width, encoded.height)
    return image


def run(
    op: str,
    body: Mapping[str, object],
    source: bytes,
    fmt: ImageFormat = "png",
    watermarks: Mapping[str, bytes] | None = None,
    limits: Limits = LIMITS,
) -> tuple[Encoded, Array]:
    encoded = parse(op, body).apply(source, fmt, watermarks or {}, limits)
    return encoded, np.asarray(read(encoded))


def problems(op: str, body: Mapping[str, object]) -> list[str]:
    with pytest.raises(Unprocessable) as error:
        parse(op, body)
    return error.value.problems


def refusal(
    op: str,
    body: Mapping[str, object],
    source: bytes,
    watermarks: Mapping[str, bytes] | None = None,
    limits: Limits = LIMITS,
) -> list[str]:
    transform = parse(op, body)
    with pytest.raises(Unprocessable) as error:
        transform.apply(source, "png", watermarks or {}, limits)
    return error.value.problems


def coordinates(width: int = 40, height: int = 30) -> Array:
    """Each pixel says where it is: R = x, G = y, B = 7."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.dstack([xx, yy, np.full_like(xx, 7)]).astype(np.uint8)


def halves(width: int, height: int, left: tuple[int, ...], right: tuple[int, ...]) -> Array:
    pixels = np.zeros((height, width, len(left)), dtype=np.uint8)
    pixels[:, : width // 2] = left
    pixels[:, width // 2 :] = right
    return pixels


def solid(width: int, height: int, colour: tuple[int, ...]) -> Array:
    return np.tile(np.array(colour, dtype=np.uint8), (height, width, 1))


def noise(width: int, height: int, seed: int = 0) -> Array:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- parse: the ops, types, every problem at once ----------------------------------------

MINIMAL: dict[str, dict[str, object]] = {
    "convert": {"format": "png"},
    "resize": {"width": 10},
    "crop": {"x1": 0, "y1": 0, "x2": 1, "y2": 1},
    "rotate": {"angle": 10},
    "mirror": {"mode": "both"},
    "blur": {},
    "modulate": {"hue": 10},
    "watermark": {"watermarks": [{"id": "image_a"}]},
}


def test_every_op_parses_its_minimal_body_and_ignores_unknown_fields() -> None:
    assert set(OPS) == set(MINIMAL)
    for op in OPS:
        transform = parse(op, {**MINIMAL[op], "name": "kept by the dialect", "extra": [1]})
        assert hasattr(transform, "apply")


def test_an_unknown_op_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown transform"):
        parse("sharpen", {})


def test_every_bad_field_is_listed_not_just_the_first() -> None:
    assert problems(
        "resize",
        {
            "width": 0,
            "height": "5",
            "fit": "stretch",
            "position": 3,
            "letterbox_color": "nope",
        },
    ) == [
        "width: must be an integer from 1 to 9999",
        "height: must be an integer from 1 to 9999",
        "fit: must be one of fill, contain, cover",
        "position: must be one of center, top, right, bottom, left, top-left, top-right, "
        "bottom-left, bottom-right",
        "letterbox_color: must be a css colour name, a #rgb, #rrggbb or #rrggbbaa hex colour, "
        "or transparent",
    ]


def test_missing_fields_are_each_named() -> None:
    assert problems("crop", {}) == [
        "x1: is required",
        "y1: is required",
        "x2: is required",
        "y2: is required",
    ]
    assert problems("convert", {}) == ["format: is required"]
    assert problems("rotate", {"unit": "turns"}) == [
        "angle: is required",
        "unit: must be one of degrees, radians",
    ]
    assert problems("mirror", {"mode": None}) == ["mode: is required"]
    assert problems("watermark", {}) == ["watermarks: is required"]


@pytest.mark.parametrize("value", [True, False, "5", "", [5], {"n": 5}, 5.5, math.nan, math.inf])
def test_integers_refuse_booleans_strings_fractions_and_non_finite(value: object) -> None:
    assert problems("resize", {"width": value}) == ["width: must be an integer from 1 to 9999"]


@pytest.mark.parametrize("value", [True, "5", "", [1.5], math.nan, -math.inf, 10**400])
def test_numbers_refuse_booleans_strings_and_non_finite(value: object) -> None:
    assert problems("rotate", {"angle": value}) == ["angle: must be a number"]


def test_integers_may_arrive_as_whole_floats_and_null_means_not_sent() -> None:
    encoded, _ = run("resize", {"width": 20.0, "height": None}, save(coordinates(40, 30)))
    assert (encoded.width, encoded.height) == (20, 15)
    assert problems("crop", {"x1": None, "y1": 0, "x2": 1, "y2": 1}) == ["x1: is required"]


# --- convert -----------------------------------------------------------------------------


def test_convert_a_transparent_png_to_jpeg_lays_it_on_white() -> None:
    pixels = np.zeros((20, 20, 4), dtype=np.uint8)
    pixels[:, 10:] = (0, 0, 255, 255)  # left half clear (and black underneath), right blue
    encoded, out = run("convert", {"format": "jpg"}, save(pixels))
    assert encoded.format == "jpeg"
    assert out.shape == (20, 20, 3)
    assert np.abs(out[:, :8].astype(int) - 255).max() <= 3
    assert np.abs(out[:, 12:].astype(int) - (0, 0, 255)).max() <= 8


def test_convert_to_webp_keeps_alpha_exactly() -> None:
    pixels = np.zeros((16, 64, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[..., 3] = np.arange(64, dtype=np.uint8)[None, :] * 4
    encoded, out = run("convert", {"format": "webp"}, save(pixels))
    assert encoded.format == "webp"
    assert out.shape == (16, 64, 4)
    assert np.array_equal(out[..., 3], pixels[..., 3])


def test_convert_quality_changes_the_size_for_jpeg_and_webp_only() -> None:
    source = save(noise(64, 64))
    for fmt in ("jpeg", "webp"):
        low, _ = run("convert", {"format": fmt, "quality": 10}, source)
        high, _ = run("convert", {"format": fmt, "quality": 95}, source)
        default, _ = run("convert", {"format": fmt}, source)
        assert len(low.data) < len(default.data) < len(high.data), fmt
    png_low, _ = run("convert", {"format": "png", "quality": 1}, source)
    png_high, out = run("convert", {"format": "png", "quality": 100}, source)
    assert png_low.data == png_high.data
    assert np.array_equal(out, noise(64, 64))


def test_convert_refuses_other_formats_and_qualities() -> None:
    assert problems("convert", {"format": "gif", "quality": 0}) == [
        "format: must be one of jpeg, jpg, png, webp",
        "quality: must be an integer from 1 to 100",
    ]
    assert problems("convert", {"format": "png", "quality": 101}) == [
        "quality: must be an integer from 1 to 100"
    ]


def test_other_ops_keep_the_source_format() -> None:
    source = save(noise(30, 20), "JPEG")
    encoded, _ = run("mirror", {"mode": "horizontal"}, source, fmt="jpeg")
    assert encoded.format == "jpeg"
    encoded, _ = run("blur", {}, save(noise(30, 20), "WEBP"), fmt="webp")
    assert encoded.format == "webp"


# --- resize ------------------------------------------------------------------------------


def test_resize_fill_stretches_to_exactly_the_size() -> None:
    encoded, out = run("resize", {"width": 13, "height": 77}, save(coordinates(40, 30)))
    assert (encoded.width, encoded.height) == (13, 77)
    assert out.shape == (77, 13, 3)


@pytest.mark.parametrize(
    ("body", "size"),
    [
        ({"width": 50}, (50, 25)),
        ({"height": 7}, (14, 7)),
        ({"width": 3}, (3, 2)),  # 1.5 rounds to 2
        ({"width": 1}, (1, 1)),  # 0.5 would round to 0: at least 1
        ({"height": 40, "fit": "cover"}, (80, 40)),
    ],
)
def test_resize_with_one_side_keeps_the_aspect_ratio(
    body: dict[str, object], size: tuple[int, int]
) -> None:
    encoded, _ = run("resize", body, save(solid(200, 100, RED)))
    assert (encoded.width, encoded.height) == size


def test_resize_contain_letterboxes_with_the_colour_at_the_position() -> None:
    source = save(solid(200, 100, RED))
    _, out = run(
        "resize", {"width": 100, "height": 100, "fit": "contain", "letterbox_color": "blue"}, source
    )
    assert out.shape == (100, 100, 3)
    assert (out[:25] == BLUE).all() and (out[75:] == BLUE).all()
    assert (out[26:74] == RED).all()
    _, out = run(
        "resize",
        {
            "width": 100,
            "height": 100,
            "fit": "contain",
            "letterbox_color": "#0f0",
            "position": "top",
        },
        source,
    )
    assert (out[:49] == RED).all() and (out[50:] == GREEN).all()
    _, out = run(
        "resize",
        {
            "width": 100,
            "height": 50,
            "fit": "contain",
            "position": "bottom-right",
            "letterbox_color": "white",
        },
        save(solid(50, 100, RED)),
    )
    assert (out[:, 75:] == RED).all() and (out[:, :75] == WHITE).all()


def test_resize_contain_letterbox_defaults_to_transparent_or_white_for_jpeg() -> None:
    body = {"width": 60, "height": 60, "fit": "contain"}
    encoded, out = run("resize", body, save(solid(60, 30, RED)))
    assert out.shape == (60, 60, 4)
    assert (out[:10, :, 3] == 0).all() and (out[20:40] == (*RED, 255)).all()
    encoded, out = run("resize", body, save(solid(60, 30, RED), "JPEG"), fmt="jpeg")
    assert encoded.format == "jpeg"
    assert (out[:10] >= 250).all()


def test_resize_contain_keeps_the_pictures_own_transparency() -> None:
    pixels = solid(60, 30, (0, 0, 0, 0))
    _, out = run(
        "resize",
        {"width": 60, "height": 60, "fit": "contain", "letterbox_color": "red"},
        save(pixels),
    )
    assert (out[:15] == (*RED, 255)).all()
    assert (out[16:44, :, 3] == 0).all()


@pytest.mark.parametrize(
    ("position", "colour"),
    [("left", RED), ("right", BLUE), ("top-left", RED), ("bottom-right", BLUE)],
)
def test_resize_cover_keeps_the_part_the_position_names(
    position: str, colour: tuple[int, int, int]
) -> None:
    source = save(halves(200, 100, RED, BLUE))
    body = {"width": 50, "height": 50, "fit": "cover", "position": position}
    _, out = run("resize", body, source)
    assert out.shape == (50, 50, 3)
    # As a resize then a crop: the kept half's inner edge feels the other half's colour.
    inner = out[:, :-2] if colour == RED else out[:, 2:]
    assert (np.abs(inner.astype(int) - colour) <= 2).all()


def test_resize_cover_centre_crops_both_sides_evenly() -> None:
    _, out = run(
        "resize", {"width": 50, "height": 50, "fit": "cover"}, save(halves(200, 100, RED, BLUE))
    )
    assert (out[:, :21] == RED).all() and (out[:, 29:] == BLUE).all()
    # The kept middle of a 100-wide gradient; the rows are untouched.
    _, out = run(
        "resize",
        {"width": 10, "height": 30, "fit": "cover", "position": "center"},
        save(coordinates(100, 30)),
    )
    assert abs(int(out[0, 0, 0]) - 45) <= 1 and abs(int(out[0, 9, 0]) - 54) <= 1
    assert out[:, 5, 1].tolist() == list(range(30))


def test_resize_refuses_results_over_the_pixel_limit_or_the_side_limit() -> None:
    source = save(solid(100, 10, RED))
    assert refusal("resize", {"width": 3000, "height": 2000}, source) == [
        "width: the result would be 3000x2000, 6,000,000 pixels; at most 4,194,304 are allowed"
    ]
    assert refusal("resize", {"height": 9999}, source, limits=Limits(1, 1, 10**12)) == [
        "height: the result would be 99990x9999; sides of at most 9999 pixels are allowed"
    ]
    encoded, _ = run("resize", {"width": 2048, "height": 2048}, source)
    assert encoded.width * encoded.height == LIMITS.max_pixels


def test_resize_needs_a_side() -> None:
    assert problems("resize", {"fit": "contain"}) == ["body: must set width, height or both"]
    assert problems("resize", {"width": 10000}) == ["width: must be an integer from 1 to 9999"]


def test_resize_blends_alpha_edges_without_the_hidden_colour() -> None:
    pixels = halves(40, 10, (255, 0, 0, 0), (0, 0, 255, 255))  # clear red beside opaque blue
    _, out = run("resize", {"width": 13, "height": 10}, save(pixels))
    seen = out[out[..., 3] > 0]
    assert seen.size and int(seen[..., 0].max()) <= 2  # no red fringe


# --- crop --------------------------------------------------------------------------------


def test_crop_takes_exactly_the_box_for_many_boxes() -> None:
    pixels = coordinates(40, 30)
    source = save(pixels)
    chance = random.Random(11)
    boxes = [(0, 0, 40, 30), (39, 29, 40, 30), (0, 0, 1, 1)]
    boxes += [
        (x1, y1, chance.randint(x1 + 1, 40), chance.randint(y1 + 1, 30))
        for x1, y1 in ((chance.randrange(40), chance.randrange(30)) for _ in range(25))
    ]
    for x1, y1, x2, y2 in boxes:
        encoded, out = run("crop", {"x1": x1, "y1": y1, "x2": x2, "y2": y2}, source)
        assert (encoded.width, encoded.height) == (x2 - x1, y2 - y1)
        assert np.array_equal(out, pixels[y1:y2, x1:x2])


def test_crop_outside_the_image_names_each_field() -> None:
    source = save(coordinates(40, 30))
    assert refusal("crop", {"x1": 40, "y1": 30, "x2": 41, "y2": 31}, source) == [
        "x1: must be at most the image's width, 39",
        "y1: must be at most the image's height, 29",
        "x2: must be at most the image's width, 40",
        "y2: must be at most the image's height, 30",
    ]
    assert refusal("crop", {"x1": 0, "y1": 0, "x2": 10, "y2": 31}, source) == [
        "y2: must be at most the image's height, 30"
    ]


def test_crop_boxes_must_have_area() -> None:
    assert problems("crop", {"x1": 5, "y1": 5, "x2": 5, "y2": 4}) == [
        "x2: must be greater than x1",
        "y2: must be greater than y1",
    ]
    assert problems("crop", {"x1": -1, "y1": 0, "x2": 0, "y2": "1"}) == [
        "x1: must be an integer of at least 0",
        "x2: must be an integer of at least 1",
        "y2: must be an integer of at least 1",
    ]


# --- rotate ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "quarter_turns_clockwise"),
    [
        ({"angle": 90}, 1),
        ({"angle": 180}, 2),
        ({"angle": 270}, 3),
        ({"angle": -90}, 3),
        ({"angle": 450.0}, 1),
        ({"angle": 0}, 0),
        ({"angle": 360}, 0),
        ({"angle": math.pi / 2, "unit": "radians"}, 1),
        ({"angle": -math.pi, "unit": "radians"}, 2),
    ],
)
def test_rotate_by_right_angles_is_clockwise_and_exact(
    body: dict[str, object], quarter_turns_clockwise: int
) -> None:
    pixels = coordinates(40, 30)
    encoded, out = run("rotate", body, save(pixels))
    expected = np.rot90(pixels, k=-quarter_turns_clockwise)  # negative k: clockwise
    assert (encoded.width, encoded.height) == (expected.shape[1], expected.shape[0])
    assert np.array_equal(out, expected)


def test_rotate_positive_angles_turn_clockwise() -> None:
    pixels = solid(61, 61, WHITE)
    pixels[0:6, 28:33] = RED  # a mark at the top, middle
    for angle, side in ((30, 1), (-30, -1)):
        _, out = run("rotate", {"angle": angle, "background_color": "white"}, save(pixels))
        _, xs = np.nonzero((out[..., 0] > 200) & (out[..., 1] < 80))
        assert xs.size
        # Clockwise carries the top of the picture to the right.
        assert np.sign(xs.mean() - out.shape[1] / 2) == side, angle


def test_rotate_45_grows_the_canvas_and_fills_the_corners() -> None:
    source = save(solid(100, 60, RED))
    encoded, out = run("rotate", {"angle": 45, "background_color": "#00ff00"}, source)
    side = math.ceil((100 + 60) / math.sqrt(2))
    assert (encoded.width, encoded.height) == (side, side) == rotated_size((100, 60), 45)
    assert out.shape == (side, side, 3)
    for corner in (out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]):
        assert tuple(corner) == GREEN
    assert tuple(out[side // 2, side // 2]) == RED
    # Default: transparent corners for png, white ones for jpeg.
    _, out = run("rotate", {"angle": 45}, source)
    assert out[0, 0, 3] == 0 and tuple(out[side // 2, side // 2]) == (*RED, 255)
    _, out = run("rotate", {"angle": 45}, save(solid(100, 60, RED), "JPEG"), fmt="jpeg")
    assert (out[0, 0] >= 250).all()


def test_rotate_fills_only_the_new_corners_of_a_transparent_picture() -> None:
    _, out = run(
        "rotate", {"angle": 30, "background_color": "blue"}, save(solid(40, 40, (0, 0, 0, 0)))
    )
    assert tuple(out[0, 0]) == (*BLUE, 255)
    assert out[out.shape[0] // 2, out.shape[1] // 2, 3] == 0


def test_rotate_refuses_a_canvas_over_the_limit() -> None:
    limits = Limits(1, 1, 15_000)
    source = save(solid(100, 100, RED))
    assert refusal("rotate", {"angle": 45}, source, limits=limits) == [
        "angle: the result would be 142x142, 20,164 pixels; at most 15,000 are allowed"
    ]
    encoded, _ = run("rotate", {"angle": 90}, source, limits=limits)
    assert encoded.width == 100


def test_rotated_size_is_the_bounding_box() -> None:
    assert rotated_size((100, 60), 0) == (100, 60)
    assert rotated_size((100, 60), 90) == (60, 100)
    assert rotated_size((100, 100), 45) == (142, 142)
    assert rotated_size((10, 10), 60) == (14, 14)  # 5 + 8.66
    assert rotated_size((1, 1), 30) == (2, 2)


# --- mirror ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "flip"),
    [
        ("horizontal", lambda a: a[:, ::-1]),
        ("vertical", lambda a: a[::-1]),
        ("both", lambda a: a[::-1, ::-1]),
    ],
)
def test_mirror_flips_exactly(mode: str, flip: object) -> None:
    pixels = coordinates(40, 30)
    _, out = run("mirror", {"mode": mode}, save(pixels))
    assert callable(flip)
    assert np.array_equal(out, flip(pixels))


def test_mirror_needs_a_mode() -> None:
    assert problems("mirror", {}) == ["mode: is required"]
    assert problems("mirror", {"mode": "diagonal"}) == [
        "mode: must be one of horizontal, vertical, both"
    ]


# --- blur --------------------------------------------------------------------------------


def _edge_width(sigma: float) -> int:
    """How many columns a blurred black|white edge spreads over."""
    _, out = run("blur", {"sigma": sigma}, save(halves(80, 8, (0, 0, 0), WHITE)))
    row = out[4, :, 0].astype(int)
    return int(((row > 5) & (row < 250)).sum())


def test_blur_smooths_an_edge_and_more_with_a_larger_sigma() -> None:
    narrow, wide = _edge_width(1), _edge_width(5)
    assert 2 <= narrow < wide
    assert wide >= 4 * 5  # about +-2 sigma spreads visibly
    _, out = run("blur", {}, save(halves(80, 8, (0, 0, 0), WHITE)))
    assert 0 < out[4, 40, 0] < 255  # the default blurs too


def test_blur_on_alpha_does_not_bleed_the_hidden_colour() -> None:
    _, out = run("blur", {"sigma": 3}, save(halves(40, 10, (255, 0, 0, 0), (0, 0, 255, 255))))
    seen = out[out[..., 3] > 0]
    assert int(seen[..., 0].max()) <= 2
    assert 0 < out[5, 19, 3] < 255


@pytest.mark.parametrize("sigma", [0.29, 1000.1, -1, "3", True])
def test_blur_sigma_range(sigma: object) -> None:
    assert problems("blur", {"sigma": sigma}) == ["sigma: must be a number from 0.3 to 1000"]


# --- modulate ----------------------------------------------------------------------------


def test_modulate_brightness_zero_is_black_and_two_is_brighter() -> None:
    pixels = noise(32, 16)
    _, out = run("modulate", {"brightness": 0}, save(pixels))
    assert out.max() == 0
    _, out = run("modulate", {"brightness": 2}, save(pixels))
    assert out.astype(float).mean() > pixels.astype(float).mean() + 30


def test_modulate_saturation_zero_is_grey() -> None:
    _, out = run("modulate", {"saturation": 0}, save(noise(32, 16)))
    spread = out.astype(int).max(axis=2) - out.astype(int).min(axis=2)
    assert spread.max() <= 1
    assert out.std() > 10  # grey, not flat


def test_modulate_hue_moves_red_toward_green() -> None:
    _, out = run("modulate", {"hue": 90}, save(solid(4, 4, RED)))
    red, green, _ = (int(v) for v in out[0, 0])
    assert green > 100 and red < 100
    _, same = run("modulate", {"hue": 360, "saturation": 1}, save(noise(16, 16)))
    assert np.array_equal(same, noise(16, 16))


def test_modulate_identity_round_trips_and_keeps_alpha() -> None:
    pixels = np.dstack([noise(32, 16), np.arange(32 * 16, dtype=np.uint8).reshape(16, 32)])
    _, out = run("modulate", {"hue": 0, "brightness": 1, "lightness": 0}, save(pixels))
    assert np.abs(out.astype(int) - pixels).max() <= 1
    _, out = run("modulate", {"brightness": 0.5, "hue": 40}, save(pixels))
    assert np.array_equal(out[..., 3], pixels[..., 3])
    assert out[..., :3].astype(float).mean() < pixels[..., :3].astype(float).mean()


def test_modulate_contrast_exposure_and_lightness() -> None:
    greys = save(np.array([[[64] * 3, [128] * 3, [192] * 3]], dtype=np.uint8))
    _, out = run("modulate", {"contrast": 2}, greys)
    assert out[0, :, 0].tolist() == [0, 128, 255]
    _, out = run("modulate", {"contrast": 3}, save(np.array([[[100] * 3, [150] * 3]], np.uint8)))
    assert out[0, :, 0].tolist() == [44, 194]  # the pivot is 128, not 127.5
    _, out = run("modulate", {"contrast": 0}, greys)
    assert out[0, :, 0].tolist() == [128, 128, 128]
    _, out = run("modulate", {"exposure": 2}, greys)
    # Twice the linear light: 64 is 0.0513 linear, 0.1026 is 90 in sRGB; 128 -> 176.
    assert out[0, :, 0].tolist() == [90, 176, 255]
    _, out = run("modulate", {"lightness": 20}, greys)
    assert (out[0, :, 0] > [64, 128, 192]).all()


def test_modulate_fields() -> None:
    assert problems("modulate", {"name": "x"}) == [
        "body: must set at least one of brightness, saturation, hue, lightness, contrast "
        "and exposure"
    ]
    assert problems(
        "modulate",
        {
            "brightness": -0.1,
            "saturation": "1",
            "contrast": True,
            "exposure": -1,
            "hue": 1.5,
            "lightness": "up",
        },
    ) == [
        "brightness: must be a number of at least 0",
        "saturation: must be a number of at least 0",
        "contrast: must be a number of at least 0",
        "exposure: must be a number of at least 0",
        "hue: must be an integer",
        "lightness: must be a number",
    ]
    parse("modulate", {"hue": 120.0, "lightness": -300})


# --- watermark ---------------------------------------------------------------------------


def test_watermark_lands_at_left_top() -> None:
    base = save(solid(100, 80, WHITE))
    mark = save(solid(10, 6, RED))
    _, out = run(
        "watermark",
        {"watermarks": [{"id": "m", "left": 20, "top": 30}]},
        base,
        watermarks={"m": mark},
    )
    expected = solid(100, 80, WHITE)
    expected[30:36, 20:30] = RED
    assert np.array_equal(out, expected)


def test_watermark_alpha_blends_and_the_base_keeps_its_alpha() -> None:
    base = save(solid(20, 20, (0, 0, 255, 100)))
    mark = save(solid(4, 4, (255, 0, 0, 255)))
    half = save(solid(4, 4, (255, 255, 255, 128)))
    _, out = run(
        "watermark",
        {"watermarks": [{"id": "m"}, {"id": "h", "left": 10}]},
        base,
        watermarks={"m": mark, "h": half},
    )
    assert tuple(out[0, 0]) == (255, 0, 0, 255)
    assert tuple(out[10, 10]) == (0, 0, 255, 100)
    assert out[0, 11, 3] > 100 and 0 < out[0, 11, 0] < 255


def test_watermark_repeat_tiles_the_whole_image_from_left_top() -> None:
    mark = solid(10, 10, WHITE)
    mark[0, 0] = RED  # one red pixel at each tile's corner
    base = save(solid(40, 30, (0, 0, 0)))
    _, out = run(
        "watermark",
        {"watermarks": [{"id": "m", "left": 5, "top": 3, "repetition_mode": "repeat"}]},
        base,
        watermarks={"m": save(mark)},
    )
    ys, xs = np.nonzero(out[..., 1] == 0)
    assert sorted(set(xs.tolist())) == [5, 15, 25, 35]
    assert sorted(set(ys.tolist())) == [3, 13, 23]
    assert (out.sum(axis=2) > 0).all()  # every pixel covered, before left/top too


@pytest.mark.parametrize(
    ("mode", "rows", "cols"),
    [
        ("repeat_x", slice(3, 13), slice(0, 40)),
        ("repeat-x", slice(3, 13), slice(0, 40)),
        ("repeat_y", slice(0, 30), slice(5, 15)),
        ("no-repeat", slice(3, 13), slice(5, 15)),
        ("no_repeat", slice(3, 13), slice(5, 15)),
    ],
)
def test_watermark_repeat_along_one_axis(mode: str, rows: slice, cols: slice) -> None:
    body = {"watermarks": [{"id": "m", "left": 5, "top": 3, "repetition_mode": mode}]}
    base = save(solid(40, 30, (0, 0, 0)))
    _, out = run("watermark", body, base, watermarks={"m": save(solid(10, 10, RED))})
    expected = solid(40, 30, (0, 0, 0))
    expected[rows, cols] = RED
    assert np.array_equal(out, expected)


def test_watermark_size_and_placement_off_the_image() -> None:
    base = save(solid(50, 50, (0, 0, 0)))
    mark = save(solid(10, 5, RED))
    _, out = run(
        "watermark", {"watermarks": [{"id": "m", "width": 20}]}, base, watermarks={"m": mark}
    )
    assert (out[:10, :20] == RED).all() and (out[10:] == 0).all() and (out[:, 20:] == 0).all()
    _, out = run(
        "watermark", {"watermarks": [{"id": "m", "height": 10}]}, base, watermarks={"m": mark}
    )
    assert (out[:10, :20] == RED).all() and (out[:, 20:] == 0).all()
    _, out = run(
        "watermark",
        {"watermarks": [{"id": "m", "width": 3, "height": 40, "left": 45, "top": 20}]},
        base,
        watermarks={"m": mark},
    )
    assert (out[20:, 45:48] == RED).all() and int(out.sum()) == 30 * 3 * 255
    marked = solid(10, 5, RED)
    marked[0, 0] = GREEN
    far = {"id": "m", "left": 10**30 + 3, "top": 10**30 + 2, "repetition_mode": "repeat"}
    _, out = run("watermark", {"watermarks": [far]}, base, watermarks={"m": save(marked)})
    ys, xs = np.nonzero(out[..., 1] == 255)  # tiles still line up with left, top
    assert sorted(set(xs.tolist())) == [3, 13, 23, 33, 43]
    assert sorted(set(ys.tolist())) == [2, 7, 12, 17, 22, 27, 32, 37, 42, 47]
    _, out = run(
        "watermark", {"watermarks": [{"id": "m", "left": 50}]}, base, watermarks={"m": mark}
    )
    assert int(out.sum()) == 0


def test_watermark_ids_and_a_missing_watermark() -> None:
    transform = parse(
        "watermark", {"watermarks": [{"id": "image_b"}, {"id": "image_a"}, {"id": "image_b"}]}
    )
    assert list(transform.watermark_ids()) == ["image_b", "image_a", "image_b"]
    assert parse("crop", MINIMAL["crop"]).watermark_ids() == ()
    base = save(solid(10, 10, RED))
    assert refusal(
        "watermark", {"watermarks": [{"id": "x"}, {"id": "y"}]}, base, watermarks={"x": base}
    ) == ["watermarks[1].id: no image with this id"]
    assert refusal("watermark", {"watermarks": [{"id": "x"}]}, base, watermarks={"x": b"junk"}) == [
        "watermarks[0].id: could not be read as a jpeg, png or webp image"
    ]


def test_watermark_resize_over_the_limit_is_refused() -> None:
    base = save(solid(10, 10, RED))
    assert refusal(
        "watermark",
        {"watermarks": [{"id": "x", "width": 9999, "height": 9999}]},
        base,
        {"x": base},
        limits=Limits(1, 1, 10_000),
    ) == [
        "watermarks[0].width: the result would be 9999x9999, 99,980,001 pixels; "
        "at most 10,000 are allowed"
    ]


def test_watermark_fields() -> None:
    for value in ([], "image_a", [{"id": "a"}] * 11, {"id": "a"}):
        assert problems("watermark", {"watermarks": value}) == [
            "watermarks: must be a list of 1 to 10 watermark objects"
        ]
    assert problems(
        "watermark",
        {
            "watermarks": [
                {"left": -1, "top": 1.5, "width": 0, "height": 10000},
                "image_a",
                {"id": "", "repetition_mode": "tile"},
                {"id": 5},
            ]
        },
    ) == [
        "watermarks[0].id: is required",
        "watermarks[0].left: must be an integer of at least 0",
        "watermarks[0].top: must be an integer of at least 0",
        "watermarks[0].width: must be an integer from 1 to 9999",
        "watermarks[0].height: must be an integer from 1 to 9999",
        "watermarks[1]: must be an object",
        "watermarks[2].id: must be a non-empty string",
        "watermarks[2].repetition_mode: must be one of no_repeat, repeat, repeat_x, repeat_y",
        "watermarks[3].id: must be a non-empty string",
    ]


# --- the source ---------------------------------------------------------------------------


def test_a_source_over_the_limits_or_unreadable_is_refused() -> None:
    source = save(solid(100, 100, RED))
    assert refusal("mirror", {"mode": "both"}, source, limits=Limits(1, 1, 9_999)) == [
        "image: must have at most 9,999 pixels"
    ]
    assert refusal("mirror", {"mode": "both"}, b"not an image") == [
        "image: could not be read as a jpeg, png or webp image"
    ]
    assert refusal("mirror", {"mode": "both"}, source[: len(source) // 2]) == [
        "image: could not be read as a jpeg, png or webp image"
    ]


def test_stored_images_are_used_as_uploaded_without_the_exif_turn() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 to view": ignored, as the stored bytes are served as they are
    source = save(Image.fromarray(noise(40, 20)), "JPEG", exif=exif)
    encoded, _ = run("blur", {"sigma": 1}, source, fmt="jpeg")
    assert (encoded.width, encoded.height) == (40, 20)


def test_sixteen_bit_and_palette_sources() -> None:
    wide = (np.arange(64, dtype=np.uint16)[None, :].repeat(4, axis=0) * 1024).astype(np.uint16)
    _, out = run("mirror", {"mode": "vertical"}, save(Image.fromarray(wide)))
    assert out[0, :, 0].tolist() == [(v * 1024) >> 8 for v in range(64)]
    palette = Image.fromarray(solid(8, 8, RED)).convert("P")
    palette.info["transparency"] = palette.getpixel((0, 0))
    _, out = run("mirror", {"mode": "both"}, save(palette))
    assert out.shape == (8, 8, 4) and (out[..., 3] == 0).all()
