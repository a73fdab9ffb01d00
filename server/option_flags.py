"""`matte remove`'s cut-out flags: one for each field of CutoutOptions.

The form fields (those `CutoutOptions.with_fields` reads, as the Stability form
sends them) are found by asking with_fields which names it reads, so a new form
field gets its flag, and its text goes through the very parsing the API's does
(errors read the same). The fields no form reads by name (each newer dialect
spells them its own way) get a flag here, parsed by server/option_text.py's
shared parsers; tests/server/test_cli_options.py checks that no field is left
without a flag.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadRequest
from .option_text import (
    COLOR_HELP,
    SIZE_PRESETS,
    parse_color,
    parse_margin,
    parse_position,
    parse_region,
    parse_scale,
    parse_size,
)
from .options import ALL_OUTPUT_FORMATS, CutoutOptions

Parse = Callable[[str, str], object]


def _read_image(name: str, raw: str) -> bytes:
    try:
        return Path(raw).read_bytes()
    except OSError as exc:
        raise BadRequest(f"{name}: cannot read {raw}: {exc.strerror or exc}", field=name) from None


# Fields no form reads by name: the flag's spelling (remove.bg's, where it has one)
# and its parser. bgcolor is a form field, but the shared colour parser takes names
# and hex too, beside the form's r,g,b.
_OWN: dict[str, tuple[str, Parse]] = {
    "bgcolor": ("bgcolor", parse_color),
    "inverse_mask": ("inverse_mask", lambda name, raw: raw == "true"),
    "crop": ("crop", lambda name, raw: raw == "true"),
    "crop_margin": ("crop_margin", parse_margin),
    "roi": ("roi", parse_region),
    "scale": ("scale", parse_scale),
    "position": ("position", parse_position),
    "decontaminate": ("decontaminate", lambda name, raw: raw == "true"),
    "bg_image": ("bg_image", _read_image),
    "max_output_pixels": ("size", lambda name, raw: parse_size(name, raw, SIZE_PRESETS)),
}

_HELP = {
    "output_format": "output format: "
    + ", ".join(ALL_OUTPUT_FORMATS)
    + " (auto: png when any pixel is transparent, else jpg); by default -o's extension, "
    "else png",
    "only_mask": "write the mask (white subject on black) instead of the cut-out",
    "inverse_mask": "write the inverted mask (black subject on white)",
    "post_process_mask": "smooth the mask (opening, blur, threshold at 127)",
    "alpha_matting": "refine the edges with closed-form matting",
    "alpha_matting_foreground_threshold": "matting: mask values above it are sure foreground",
    "alpha_matting_background_threshold": "matting: mask values below it are sure background",
    "alpha_matting_erode_size": "matting: pixels by which both sure regions are eroded",
    "bgcolor": f"lay the cut-out on this colour: {COLOR_HELP}",
    "crop": "trim the output to the subject (plus --crop-margin)",
    "crop_margin": "margin kept around the cropped subject: 30px, 10%%, or 2 or 4 values",
    "roi": "region of interest x1 y1 x2 y2 (px or %%): outside it is background",
    "scale": "the subject's size in the canvas: 10%% to 100%%, or original",
    "position": "where the subject sits: original, center, or x%% [y%%]",
    "decontaminate": "re-estimate edge colours where the mask is partial",
    "bg_image": "lay the cut-out on this image (jpeg, png or webp), fitted to cover",
    "max_output_pixels": "size preset capping the output's pixels: " + ", ".join(SIZE_PRESETS),
}


_METAVARS = {
    "output_format": "FORMAT",
    "bgcolor": "COLOUR",
    "crop_margin": "MARGIN",
    "roi": "BOX",
    "scale": "PERCENT",
    "position": "POSITION",
    "bg_image": "FILE",
    "max_output_pixels": "PRESET",
}


@dataclass(frozen=True)
class OptionFlag:
    field: str  # CutoutOptions' name, the API's field
    spelling: str  # the flag's name, with _ for -
    parse: Parse | None  # None: a form field, parsed by with_fields
    boolean: bool
    default: str

    @property
    def flag(self) -> str:
        return "--" + self.spelling.replace("_", "-")

    @property
    def dest(self) -> str:
        return "option_" + self.field


def form_fields() -> list[str]:
    """The text fields with_fields reads, in its order: asked of with_fields itself."""
    asked: list[str] = []

    def field(name: str) -> str | None:
        asked.append(name)
        return None

    CutoutOptions().with_fields(field, ALL_OUTPUT_FORMATS)
    return asked


def option_flags() -> list[OptionFlag]:
    """A flag for each form field, then each field this module spells itself."""
    defaults = CutoutOptions()
    forms = [name for name in form_fields() if name not in _OWN]
    flags = []
    for name in [*forms, *_OWN]:
        default = getattr(defaults, name)
        spelling, parse = _OWN.get(name, (name, None))
        shown = "none" if default is None else str(default).lower()
        if isinstance(default, tuple):
            shown = ",".join(str(value) for value in default)
        if name == "crop_margin":
            shown = "0"
        flags.append(OptionFlag(name, spelling, parse, isinstance(default, bool), shown))
    return flags


def add_option_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, flags: list[OptionFlag]
) -> None:
    for flag in flags:
        names = [flag.flag]
        if flag.field == "output_format":
            names = ["-f", "--format", flag.flag]
        description = _HELP.get(flag.field, f"as the API's {flag.field} field")
        if flag.boolean:
            parser.add_argument(
                *names, dest=flag.dest, action=argparse.BooleanOptionalAction, help=description
            )
        else:
            default = "" if flag.field == "output_format" else f" (default: {flag.default})"
            metavar = _METAVARS.get(flag.field, "N" if flag.default.isdigit() else "TEXT")
            parser.add_argument(*names, dest=flag.dest, metavar=metavar, help=description + default)


def options_from(
    args: argparse.Namespace, flags: list[OptionFlag], output_format: str | None = None
) -> CutoutOptions:
    """The options the flags ask for (BadRequest naming the field when one is wrong).
    `output_format`: the format -o's extension implies, used when --format is not given."""
    texts: dict[str, str] = {}
    for flag in flags:
        value = getattr(args, flag.dest, None)
        if isinstance(value, bool):
            texts[flag.field] = "true" if value else "false"
        elif value is not None:
            texts[flag.field] = value
    if output_format is not None and "output_format" not in texts:
        texts["output_format"] = output_format
    forms = {flag.field for flag in flags if flag.parse is None}
    options = CutoutOptions().with_fields(
        lambda name: texts.get(name) if name in forms else None, ALL_OUTPUT_FORMATS
    )
    changes: dict[str, Any] = {}
    for flag in flags:
        raw = texts.get(flag.field)
        if flag.parse is not None and raw is not None and raw.strip():
            changes[flag.field] = flag.parse(flag.spelling, raw.strip())
    return dataclasses.replace(options, **changes).checked(ALL_OUTPUT_FORMATS)
