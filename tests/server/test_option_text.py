"""The text forms of the framing, colour and size options (server/option_text.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from server.errors import BadRequest
from server.option_text import (
    CENTER,
    PHOTOROOM_SIZES,
    SIZE_PRESETS,
    Length,
    Margin,
    Position,
    Region,
    parse_color,
    parse_length,
    parse_margin,
    parse_position,
    parse_region,
    parse_scale,
    parse_size,
    photoroom_size,
)


def px(value: float) -> Length:
    return Length(value, "px")


def pc(value: float) -> Length:
    return Length(value, "%")


def refusal(parse: Callable[[str, str], object], raw: str, name: str = "field") -> BadRequest:
    with pytest.raises(BadRequest) as error:
        parse(name, raw)
    return error.value


# --- lengths and margins -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "length"),
    [
        ("30px", px(30)),
        ("30PX", px(30)),
        (" 30px ", px(30)),
        ("10%", pc(10)),
        ("12.5%", pc(12.5)),
        (".5%", pc(0.5)),
        ("0", px(0)),
        ("0.0", px(0)),
        ("0%", pc(0)),
        ("0px", px(0)),
        ("1500px", px(1500)),  # clamped later (500 px per side), not refused
        ("200%", pc(200)),
    ],
)
def test_lengths(raw: str, length: Length) -> None:
    assert parse_length("crop_margin", raw) == length


@pytest.mark.parametrize(
    "raw", ["30", "-5px", "+5px", "5 px", "px", "%", "5em", "1e3px", "5pxx", "", "nan%", "inf"]
)
def test_bad_lengths_are_refused(raw: str) -> None:
    error = refusal(parse_length, raw, "crop_margin")
    assert error.messages == ("crop_margin: each value must be a length like 30px or 10% (or 0)",)
    assert error.field == "crop_margin"


def test_a_length_resolves_against_the_size_of_100_percent() -> None:
    assert px(30).resolve(1000) == 30
    assert pc(10).resolve(250) == 25
    assert pc(50).resolve(301) == 150.5


@pytest.mark.parametrize(
    ("raw", "margin"),
    [
        ("30px", Margin(px(30), px(30), px(30), px(30))),
        ("10%", Margin(pc(10), pc(10), pc(10), pc(10))),
        ("0", Margin()),
        # CSS: two values are top/bottom, then right/left.
        ("10px 20%", Margin(px(10), pc(20), px(10), pc(20))),
        ("10px,20%", Margin(px(10), pc(20), px(10), pc(20))),
        ("10px, 20%", Margin(px(10), pc(20), px(10), pc(20))),
        # Four: top, right, bottom, left.
        ("1px 2px 3px 4px", Margin(px(1), px(2), px(3), px(4))),
        ("1px,2%,0,4px", Margin(px(1), pc(2), px(0), px(4))),
        ("  1px\t2px  3px 4px ", Margin(px(1), px(2), px(3), px(4))),
    ],
)
def test_margins_in_css_order(raw: str, margin: Margin) -> None:
    assert parse_margin("crop_margin", raw) == margin


@pytest.mark.parametrize("raw", ["1px 2px 3px", "1px 2px 3px 4px 5px", "", " ", ","])
def test_margins_of_3_or_5_values_are_refused(raw: str) -> None:
    error = refusal(parse_margin, raw, "crop_margin")
    assert error.messages == (
        "crop_margin: must be 1, 2 or 4 lengths like 30px or 10% (top right bottom left)",
    )
    assert error.field == "crop_margin"


def test_a_margin_with_a_bad_value_names_the_field() -> None:
    error = refusal(parse_margin, "10px 20", "crop_margin")
    assert error.field == "crop_margin"
    assert error.messages[0].startswith("crop_margin: ")


# --- regions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("0% 0% 100% 100%", Region(pc(0), pc(0), pc(100), pc(100))),
        ("0 0 100% 100%", Region(px(0), px(0), pc(100), pc(100))),
        ("10px 20px 300px 400px", Region(px(10), px(20), px(300), px(400))),
        ("10px,20%,300px,90%", Region(px(10), pc(20), px(300), pc(90))),
        # Mixed units cannot be compared until the image's size is known.
        ("50% 0 10px 10px", Region(pc(50), px(0), px(10), px(10))),
    ],
)
def test_regions(raw: str, region: Region) -> None:
    assert parse_region("roi", raw) == region


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0 0 100%", "roi: must be four lengths x1 y1 x2 y2, like 0% 0% 100% 100%"),
        ("0 0 1px 1px 1px", "roi: must be four lengths x1 y1 x2 y2, like 0% 0% 100% 100%"),
        ("10 0 100% 100%", "roi: each value must be a length like 30px or 10% (or 0)"),
        ("0 0 100 100", "roi: each value must be a length like 30px or 10% (or 0)"),
        ("50% 0% 50% 100%", "roi: x2 and y2 must be greater than x1 and y1"),
        ("0% 60% 100% 50%", "roi: x2 and y2 must be greater than x1 and y1"),
        ("100px 0 50px 10px", "roi: x2 and y2 must be greater than x1 and y1"),
        ("0 0 0% 10px", "roi: x2 and y2 must be greater than x1 and y1"),
    ],
)
def test_bad_regions_are_refused(raw: str, message: str) -> None:
    error = refusal(parse_region, raw, "roi")
    assert error.messages == (message,)
    assert error.field == "roi"


# --- scale and position --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "scale"),
    [("10%", 0.1), ("100%", 1.0), ("55%", 0.55), ("12.5%", 0.125), ("original", None)],
)
def test_scales(raw: str, scale: float | None) -> None:
    assert parse_scale("scale", raw) == scale
    assert parse_scale("scale", f" {raw.upper()} ") == scale


@pytest.mark.parametrize("raw", ["9%", "9.99%", "100.01%", "101%", "0%", "50", "0.5", "50px", ""])
def test_scales_outside_10_to_100_percent_are_refused(raw: str) -> None:
    error = refusal(parse_scale, raw, "scale")
    assert error.messages == ("scale: must be a percentage from 10% to 100%, or original",)
    assert error.field == "scale"


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        ("original", None),
        ("ORIGINAL", None),
        ("center", CENTER),
        ("Center", CENTER),
        ("50%", Position(0.5, 0.5)),
        ("0%", Position(0.0, 0.0)),
        ("100%", Position(1.0, 1.0)),
        ("10% 80%", Position(0.1, 0.8)),
        ("10%,80%", Position(0.1, 0.8)),
        ("0% 100%", Position(0.0, 1.0)),
    ],
)
def test_positions(raw: str, position: Position | None) -> None:
    assert parse_position("position", raw) == position


def test_center_is_the_middle_of_the_free_space() -> None:
    assert (CENTER.x, CENTER.y) == (0.5, 0.5)


@pytest.mark.parametrize(
    "raw", ["101%", "50% 101%", "10px", "50", "left", "1% 2% 3%", "", "-1%", "50% x"]
)
def test_bad_positions_are_refused(raw: str) -> None:
    error = refusal(parse_position, raw, "position")
    assert error.messages == (
        "position: must be original, center, or one or two percentages from 0% to 100%",
    )
    assert error.field == "position"


# --- colours -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "color"),
    [
        ("red", (255, 0, 0)),
        ("RED", (255, 0, 0)),
        ("rebeccapurple", (102, 51, 153)),
        ("lightgoldenrodyellow", (250, 250, 210)),
        ("transparent", (0, 0, 0, 0)),
        # Hex with or without '#': 3, 4, 6 and 8 digits.
        ("#81d4fa", (0x81, 0xD4, 0xFA)),
        ("81d4fa", (0x81, 0xD4, 0xFA)),
        ("81D4FA", (0x81, 0xD4, 0xFA)),
        ("#f00", (255, 0, 0)),
        ("f00", (255, 0, 0)),
        ("f008", (255, 0, 0, 0x88)),
        ("#f008", (255, 0, 0, 0x88)),
        ("ff000080", (255, 0, 0, 0x80)),
        ("#00ff0000", (0, 255, 0, 0)),
        # "beef" is no colour name, so it is hex (4 digits: with alpha).
        ("beef", (0xBB, 0xEE, 0xEE, 0xFF)),
        # The r,g,b[,a] form every dialect already takes.
        ("1,2,3", (1, 2, 3)),
        ("1, 2, 3, 4", (1, 2, 3, 4)),
        ("[255, 0, 0]", (255, 0, 0)),
        (" 0,0,0,0 ", (0, 0, 0, 0)),
    ],
)
def test_colours(raw: str, color: tuple[int, ...]) -> None:
    assert parse_color("bg_color", raw) == color


def test_every_css_named_colour_is_taken() -> None:
    from PIL import ImageColor

    names = [name for name in ImageColor.colormap if name != "transparent"]
    assert len(names) >= 148
    for name in names:
        assert parse_color("bg_color", name) == ImageColor.getrgb(name)[:3]


@pytest.mark.parametrize(
    "raw",
    [
        *("notacolour", "#12", "12", "#12345", "1234567", "#123456789", "#ggg", "1,2"),
        *("1,2,3,4,5", "256,0,0", "[1,2,3", "1,2,3]", "rgb(1,2,3)", "", "#"),
    ],
)
def test_bad_colours_are_refused(raw: str) -> None:
    error = refusal(parse_color, raw, "bg_color")
    assert error.messages[0].startswith(
        "bg_color: must be a colour name, a hex colour (rgb, rgba, rrggbb or rrggbbaa) or r,g,b[,a]"
    )
    assert error.field == "bg_color"


# --- size presets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "pixels"),
    [
        ("preview", 250_000),
        ("small", 250_000),
        ("regular", 250_000),
        ("medium", 1_500_000),
        ("hd", 4_000_000),
        ("HD", 4_000_000),
        ("full", None),
        ("4k", None),
        ("auto", None),
        ("50MP", None),
        ("50mp", None),
    ],
)
def test_remove_bg_sizes(raw: str, pixels: int | None) -> None:
    assert parse_size("size", raw) == pixels


def test_remove_bg_sizes_are_the_documented_set() -> None:
    assert set(SIZE_PRESETS) == {
        *("preview", "small", "regular", "medium", "hd", "full", "4k", "auto", "50mp"),
    }


@pytest.mark.parametrize(
    ("raw", "pixels"),
    [("preview", 250_000), ("medium", 1_500_000), ("hd", 4_000_000), ("full", None)],
)
def test_photoroom_sizes(raw: str, pixels: int | None) -> None:
    assert photoroom_size(raw) == pixels
    assert set(PHOTOROOM_SIZES) == {"preview", "medium", "hd", "full"}


@pytest.mark.parametrize("raw", ["huge", "", "preview2", "4 k"])
def test_unknown_sizes_are_refused(raw: str) -> None:
    error = refusal(parse_size, raw, "size")
    assert error.messages == (
        "size: must be one of preview, small, regular, medium, hd, full, 4k, auto, 50mp",
    )
    assert error.field == "size"


def test_photoroom_refuses_remove_bg_only_sizes() -> None:
    with pytest.raises(BadRequest) as error:
        photoroom_size("4k")
    assert error.value.messages == ("size: must be one of preview, medium, hd, full",)
    assert error.value.field == "size"
