"""What a client may ask of a cut-out: one typed, validated object for every dialect."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest
from .imaging import OutputFormat
from .option_text import Length, Margin, Position, Region, check_fraction

# What the older dialects take; a dialect with more passes its own tuple.
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("png", "webp")
ALL_OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("png", "webp", "jpg", "zip", "auto")
MAX_ERODE_SIZE = 100  # px; larger only slows the erosion for no useful trimap
MAX_LEVEL = 255  # the thresholds are values of the 8-bit mask

NO_MARGIN = Margin()

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class CutoutOptions:
    output_format: OutputFormat = "png"
    only_mask: bool = False
    post_process_mask: bool = False
    alpha_matting: bool = False
    alpha_matting_foreground_threshold: int = 240
    alpha_matting_background_threshold: int = 10
    alpha_matting_erode_size: int = 10
    bgcolor: tuple[int, ...] | None = None
    # The mask with black and white swapped (white background, black subject);
    # a mask, so it implies only_mask. Not a form field of any dialect yet.
    inverse_mask: bool = False
    # Framing (server/framing.py). None of these is a with_fields field: each dialect
    # reads its own spelling with the parsers of server/option_text.py.
    crop: bool = False  # trim to the subject's box, plus crop_margin
    crop_margin: Margin = NO_MARGIN
    roi: Region | None = None  # outside it is background
    scale: float | None = None  # of the canvas, 0.10-1.00; None: the subject's own size
    # Fractions of the free space; None: where the subject was.
    position: Position | None = None
    # Edge colours re-estimated where 0 < alpha < 255 (server/decontamination.py).
    decontaminate: bool = False
    # An encoded image laid under the cut-out, fitted to cover it (server/backdrop.py).
    bg_image: bytes | None = None
    # A size preset: the output scaled down to at most this many pixels, aspect kept.
    max_output_pixels: int | None = None

    def with_fields(
        self,
        field: Callable[[str], str | None],
        formats: tuple[OutputFormat, ...] = OUTPUT_FORMATS,
    ) -> CutoutOptions:
        """These options with any text fields the client sent (named as here) applied.

        `field(name)` returns the client's text or None. Empty text counts as not sent,
        as form clients often send every field of a form.
        """
        # Any: each parser returns its own field's type (tests/server/test_options.py).
        changes: dict[str, Any] = {}
        raw_format = field("output_format")
        if raw_format is not None and raw_format.strip():
            changes["output_format"] = parse_format("output_format", raw_format.strip(), formats)
        for name, parse in _PARSERS.items():
            raw = field(name)
            if raw is not None and raw.strip():
                changes[name] = parse(name, raw.strip())
        return dataclasses.replace(self, **changes).checked(formats)

    def checked(self, formats: tuple[OutputFormat, ...] = OUTPUT_FORMATS) -> CutoutOptions:
        """These options, once every value is in its range and the thresholds agree.

        For options built from typed values (the JSON dialects): the same limits
        as the text parsers below, each error naming its field.
        """
        check_format("output_format", self.output_format, formats)
        fg, bg = self.alpha_matting_foreground_threshold, self.alpha_matting_background_threshold
        check_int("alpha_matting_foreground_threshold", fg, 0, MAX_LEVEL)
        check_int("alpha_matting_background_threshold", bg, 0, MAX_LEVEL)
        check_int("alpha_matting_erode_size", self.alpha_matting_erode_size, 0, MAX_ERODE_SIZE)
        if self.bgcolor is not None:
            check_bgcolor("bgcolor", self.bgcolor)
        if fg <= bg:
            raise BadRequest(
                "alpha_matting_foreground_threshold: must be greater than "
                "alpha_matting_background_threshold",
                field="alpha_matting_foreground_threshold",
            )
        self._check_framing()
        return self

    def _check_framing(self) -> None:
        margin = self.crop_margin
        for side in (margin.top, margin.right, margin.bottom, margin.left):
            check_length("crop_margin", side)
        if self.roi is not None:
            check_region("roi", self.roi)
        if self.scale is not None:
            check_fraction("scale", self.scale, 0.1, 1.0)
        if self.position is not None:
            check_fraction("position", self.position.x, 0.0, 1.0)
            check_fraction("position", self.position.y, 0.0, 1.0)
        if self.max_output_pixels is not None and self.max_output_pixels < 1:
            raise BadRequest("max_output_pixels: must be at least 1", field="max_output_pixels")
        if self.bg_image is not None and not self.bg_image:
            raise BadRequest("bg_image: is empty", field="bg_image")


def check_length(name: str, length: Length) -> Length:
    """A typed length: finite, not negative, in px or %."""
    if length.unit not in ("px", "%"):
        raise BadRequest(f"{name}: lengths must be in px or %", field=name)
    check_fraction(name, length.value, 0.0, 1e7)
    return length


def check_region(name: str, region: Region) -> Region:
    """A typed region: lengths as check_length, x2/y2 past x1/y1 where comparable."""
    for low, high in ((region.x1, region.x2), (region.y1, region.y2)):
        check_length(name, low)
        check_length(name, high)
        if (low.unit == high.unit or low.value == 0) and high.value <= low.value:
            raise BadRequest(f"{name}: x2 and y2 must be greater than x1 and y1", field=name)
    return region


def parse_format(
    name: str, raw: str, formats: tuple[OutputFormat, ...] = OUTPUT_FORMATS
) -> OutputFormat:
    return check_format(name, raw.lower(), formats)


def check_format(
    name: str, value: str, formats: tuple[OutputFormat, ...] = OUTPUT_FORMATS
) -> OutputFormat:
    """`value` as an output format: exactly one of `formats` (already lower case)."""
    for fmt in formats:
        if value == fmt:
            return fmt
    raise BadRequest(f"{name}: must be one of {', '.join(formats)}", field=name)


def parse_bool(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"{name}: must be true or false", field=name)


def parse_level(name: str, raw: str) -> int:
    return _parse_int(name, raw, 0, MAX_LEVEL)


def parse_erode(name: str, raw: str) -> int:
    return _parse_int(name, raw, 0, MAX_ERODE_SIZE)


def parse_bgcolor(name: str, raw: str) -> tuple[int, ...]:
    """`255,0,0`, `[255, 0, 0]` or with a fourth (alpha) value."""
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    items = [item.strip() for item in text.split(",")]
    if len(items) not in (3, 4) or not all(re.fullmatch(r"\d{1,3}", item) for item in items):
        raise BadRequest(_bgcolor_message(name), field=name)
    return check_bgcolor(name, tuple(int(item) for item in items))


def check_bgcolor(name: str, values: tuple[int, ...]) -> tuple[int, ...]:
    """3 or 4 channel values (red, green, blue, alpha), each 0-255."""
    if len(values) not in (3, 4) or any(not 0 <= value <= 255 for value in values):
        raise BadRequest(_bgcolor_message(name), field=name)
    return values


def _bgcolor_message(name: str) -> str:
    return f"{name}: must be 3 or 4 integers from 0 to 255, like 255,0,0 or [255, 0, 0, 255]"


def _parse_int(name: str, raw: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[+-]?\d{1,9}", raw):
        raise BadRequest(f"{name}: must be an integer from {low} to {high}", field=name)
    return check_int(name, int(raw), low, high)


def check_int(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be an integer from {low} to {high}", field=name)
    return value


# The text fields with_fields reads (output_format apart: it takes the dialect's formats).
_PARSERS: dict[str, Callable[[str, str], object]] = {
    "only_mask": parse_bool,
    "post_process_mask": parse_bool,
    "alpha_matting": parse_bool,
    "alpha_matting_foreground_threshold": parse_level,
    "alpha_matting_background_threshold": parse_level,
    "alpha_matting_erode_size": parse_erode,
    "bgcolor": parse_bgcolor,
}
