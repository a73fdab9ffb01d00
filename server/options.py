"""What a client may ask of a cut-out: one typed, validated object for every dialect."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest
from .imaging import OutputFormat

OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("png", "webp")
MAX_ERODE_SIZE = 100  # px; larger only slows the erosion for no useful trimap

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

    def with_fields(self, field: Callable[[str], str | None]) -> CutoutOptions:
        """These options with any text fields the client sent (named as here) applied.

        `field(name)` returns the client's text or None. Empty text counts as not sent,
        as form clients often send every field of a form.
        """
        # Any: each parser returns its own field's type (tests/server/test_options.py).
        changes: dict[str, Any] = {}
        for name, parse in _PARSERS.items():
            raw = field(name)
            if raw is not None and raw.strip():
                changes[name] = parse(name, raw.strip())
        return dataclasses.replace(self, **changes).checked()

    def checked(self) -> CutoutOptions:
        """These options, once every value is in its range and the thresholds agree.

        For options built from typed values (the JSON dialects): the same limits
        as the text parsers below, each error naming its field.
        """
        check_format("output_format", self.output_format)
        fg, bg = self.alpha_matting_foreground_threshold, self.alpha_matting_background_threshold
        check_int("alpha_matting_foreground_threshold", fg, 0, 255)
        check_int("alpha_matting_background_threshold", bg, 0, 255)
        check_int("alpha_matting_erode_size", self.alpha_matting_erode_size, 0, MAX_ERODE_SIZE)
        if self.bgcolor is not None:
            check_bgcolor("bgcolor", self.bgcolor)
        if fg <= bg:
            raise BadRequest(
                "alpha_matting_foreground_threshold: must be greater than "
                "alpha_matting_background_threshold",
                field="alpha_matting_foreground_threshold",
            )
        return self


def parse_format(name: str, raw: str) -> OutputFormat:
    return check_format(name, raw.lower())


def check_format(name: str, value: str) -> OutputFormat:
    """`value` as an output format: exactly one of OUTPUT_FORMATS (already lower case)."""
    for fmt in OUTPUT_FORMATS:
        if value == fmt:
            return fmt
    raise BadRequest(f"{name}: must be one of {', '.join(OUTPUT_FORMATS)}", field=name)


def parse_bool(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"{name}: must be true or false", field=name)


def parse_level(name: str, raw: str) -> int:
    return _parse_int(name, raw, 0, 255)


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


_PARSERS: dict[str, Callable[[str, str], object]] = {
    "output_format": parse_format,
    "only_mask": parse_bool,
    "post_process_mask": parse_bool,
    "alpha_matting": parse_bool,
    "alpha_matting_foreground_threshold": parse_level,
    "alpha_matting_background_threshold": parse_level,
    "alpha_matting_erode_size": parse_erode,
    "bgcolor": parse_bgcolor,
}
