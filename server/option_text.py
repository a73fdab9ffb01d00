"""The text forms of the framing and colour options (remove.bg's and Photoroom's fields):
lengths, margins, regions, scale, position, colours and size presets.

Each parser takes the field's name (the client's spelling, for the message) and its
text, and returns a typed value or raises BadRequest naming that field. The values
are plain frozen dataclasses: the pipeline resolves them against an image
(server/framing.py), since % needs a size to mean anything.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from .colours import parse_colour
from .errors import BadRequest

Unit = Literal["px", "%"]

# A length's number: digits with an optional fraction, no sign or exponent, so the
# text is short and never a huge or non-finite float.
_NUMBER = r"\d{1,7}(?:\.\d{1,6})?|\.\d{1,6}"
_LENGTH = re.compile(rf"({_NUMBER})(px|%)?")
_SEPARATORS = re.compile(r"[\s,]+")
_BARE_HEX = re.compile(r"[0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8}")
_RGB_LIST = re.compile(r"\[?\s*(\d{1,3}(?:\s*,\s*\d{1,3}){2,3})\s*\]?")

MEGAPIXEL = 1_000_000


@dataclass(frozen=True)
class Length:
    """A distance: pixels, or a percentage of a size the pipeline knows (the subject's
    box for a margin, the image's width or height for a region)."""

    value: float
    unit: Unit = "px"

    def resolve(self, size: float) -> float:
        """In pixels, given the size that 100% is."""
        return self.value if self.unit == "px" else self.value * size / 100


ZERO = Length(0.0)


@dataclass(frozen=True)
class Margin:
    """Space around the cropped subject, per side, in CSS order."""

    top: Length = ZERO
    right: Length = ZERO
    bottom: Length = ZERO
    left: Length = ZERO


@dataclass(frozen=True)
class Region:
    """A rectangle from (x1, y1) to (x2, y2); % of the image's width (x) or height (y)."""

    x1: Length
    y1: Length
    x2: Length
    y2: Length


@dataclass(frozen=True)
class Position:
    """Where the subject sits in the canvas: fractions 0-1 of the free space on each
    axis (0: left or top edge, 1: right or bottom edge)."""

    x: float
    y: float


CENTER = Position(0.5, 0.5)


def parse_length(name: str, raw: str) -> Length:
    """`30px`, `10%`, `12.5%` or a bare `0`; never negative."""
    match = _LENGTH.fullmatch(raw.strip().lower())
    if match is None or (match.group(2) is None and float(match.group(1)) != 0):
        raise BadRequest(f"{name}: each value must be a length like 30px or 10% (or 0)", field=name)
    unit: Unit = "%" if match.group(2) == "%" else "px"
    return Length(float(match.group(1)), unit)


def parse_margin(name: str, raw: str) -> Margin:
    """1, 2 or 4 lengths, space- or comma-separated, in CSS order: all sides;
    top/bottom and right/left; top, right, bottom, left."""
    items = _split(raw)
    if len(items) not in (1, 2, 4):
        raise BadRequest(
            f"{name}: must be 1, 2 or 4 lengths like 30px or 10% (top right bottom left)",
            field=name,
        )
    lengths = [parse_length(name, item) for item in items]
    if len(lengths) == 1:
        return Margin(*lengths * 4)
    if len(lengths) == 2:
        vertical, horizontal = lengths
        return Margin(vertical, horizontal, vertical, horizontal)
    return Margin(*lengths)


def parse_region(name: str, raw: str) -> Region:
    """`x1 y1 x2 y2`, each in px or % (of the width for x, the height for y) or a bare 0.
    Where both ends of an axis share a unit, the second must lie past the first; mixed
    units are checked once the image's size is known."""
    items = _split(raw)
    if len(items) != 4:
        raise BadRequest(
            f"{name}: must be four lengths x1 y1 x2 y2, like 0% 0% 100% 100%", field=name
        )
    x1, y1, x2, y2 = (parse_length(name, item) for item in items)
    for low, high in ((x1, x2), (y1, y2)):
        same_unit = low.unit == high.unit or low.value == 0
        if same_unit and high.resolve(100) <= low.resolve(100):
            raise BadRequest(f"{name}: x2 and y2 must be greater than x1 and y1", field=name)
    return Region(x1, y1, x2, y2)


def parse_scale(name: str, raw: str) -> float | None:
    """`10%` to `100%` as a fraction of the canvas, or `original` (None)."""
    text = raw.strip().lower()
    if text == "original":
        return None
    match = _LENGTH.fullmatch(text)
    if match is None or match.group(2) != "%" or not 10 <= float(match.group(1)) <= 100:
        raise BadRequest(f"{name}: must be a percentage from 10% to 100%, or original", field=name)
    return float(match.group(1)) / 100


def parse_position(name: str, raw: str) -> Position | None:
    """`original` (None: where the subject was), `center`, or one or two percentages
    (horizontal, then vertical) from 0% to 100%."""
    text = raw.strip().lower()
    if text == "original":
        return None
    if text in ("center", "centre"):
        return CENTER
    items = _split(text)
    fractions = [_percentage(item) for item in items]
    if len(items) not in (1, 2) or None in fractions:
        raise BadRequest(
            f"{name}: must be original, center, or one or two percentages from 0% to 100%",
            field=name,
        )
    x = fractions[0]
    y = fractions[-1]
    assert x is not None and y is not None  # for mypy: checked just above
    return Position(x, y)


def _percentage(text: str) -> float | None:
    match = _LENGTH.fullmatch(text)
    if match is None or match.group(2) != "%" or float(match.group(1)) > 100:
        return None
    return float(match.group(1)) / 100


COLOR_HELP = "a colour name, a hex colour (rgb, rgba, rrggbb or rrggbbaa) or r,g,b[,a]"


def parse_color(name: str, raw: str) -> tuple[int, ...]:
    """A CSS colour name, hex (3, 4, 6 or 8 digits, `#` optional) or `r,g,b[,a]` (also
    in brackets). Three values where no alpha was given, four where it was."""
    text = raw.strip().lower()
    listed = _RGB_LIST.fullmatch(text)
    if listed is not None and text.startswith("[") == text.endswith("]"):
        values = tuple(int(item) for item in listed.group(1).split(","))
        if all(value <= 255 for value in values):
            return values
        raise BadRequest(f"{name}: must be {COLOR_HELP}, each value from 0 to 255", field=name)
    if _BARE_HEX.fullmatch(text) and parse_colour(text) is None:
        text = "#" + text
    rgba = parse_colour(text)
    if rgba is None:
        raise BadRequest(f"{name}: must be {COLOR_HELP}", field=name)
    digits = text[1:] if text.startswith("#") else ""
    has_alpha = len(digits) in (4, 8) or text == "transparent"
    return rgba if has_alpha else rgba[:3]


# remove.bg's `size` values (its docs and the legacy aliases): the most pixels of the
# output, or None for "as large as the input" (the server's max_pixels still holds).
SIZE_PRESETS: dict[str, int | None] = {
    "preview": MEGAPIXEL // 4,
    "small": MEGAPIXEL // 4,
    "regular": MEGAPIXEL // 4,
    "medium": MEGAPIXEL * 3 // 2,
    "hd": 4 * MEGAPIXEL,
    "full": None,
    "4k": None,
    "auto": None,
    "50mp": None,
}

# Photoroom's legacy `size`: the same caps; its `full` (36 MP there) is the input's own
# size here, as the server's max_pixels is far below it.
PHOTOROOM_SIZES: dict[str, int | None] = {
    "preview": MEGAPIXEL // 4,
    "medium": MEGAPIXEL * 3 // 2,
    "hd": 4 * MEGAPIXEL,
    "full": None,
}


def parse_size(name: str, raw: str, presets: dict[str, int | None] = SIZE_PRESETS) -> int | None:
    """A size preset's pixel cap (None: no cap beyond the server's); case-insensitive."""
    text = raw.strip().lower()
    if text not in presets:
        raise BadRequest(f"{name}: must be one of {', '.join(presets)}", field=name)
    return presets[text]


def photoroom_size(raw: str, name: str = "size") -> int | None:
    """Photoroom's `size` (preview, medium, hd, full) as a pixel cap."""
    return parse_size(name, raw, PHOTOROOM_SIZES)


def check_fraction(name: str, value: float, low: float, high: float) -> float:
    """For options built from typed values: a finite number from low to high."""
    if not math.isfinite(value) or not low <= value <= high:
        raise BadRequest(f"{name}: must be from {low:g} to {high:g}", field=name)
    return value


def _split(raw: str) -> list[str]:
    return [item for item in _SEPARATORS.split(raw.strip()) if item]
