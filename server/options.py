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
        options = dataclasses.replace(self, **changes)
        if options.alpha_matting_foreground_threshold <= options.alpha_matting_background_threshold:
            raise BadRequest(
                "alpha_matting_foreground_threshold: must be greater than "
                "alpha_matting_background_threshold"
            )
        return options


def parse_format(name: str, raw: str) -> OutputFormat:
    value = raw.lower()
    for fmt in OUTPUT_FORMATS:
        if value == fmt:
            return fmt
    raise BadRequest(f"{name}: must be one of {', '.join(OUTPUT_FORMATS)}")


def parse_bool(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"{name}: must be true or false")


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
    message = f"{name}: must be 3 or 4 integers from 0 to 255, like 255,0,0 or [255, 0, 0, 255]"
    if len(items) not in (3, 4) or not all(re.fullmatch(r"\d{1,3}", item) for item in items):
        raise BadRequest(message)
    values = tuple(int(item) for item in items)
    if any(value > 255 for value in values):
        raise BadRequest(message)
    return values


def _parse_int(name: str, raw: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[+-]?\d{1,9}", raw):
        raise BadRequest(f"{name}: must be an integer from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be an integer from {low} to {high}")
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
