"""The descriptions every dialect shares: the cut-out option fields and image fields.

The option fields' names (and their order) are recorded from the parsers themselves:
`CutoutOptions.with_fields` for forms and `_common.cutout_options` for JSON bodies are
run once over a body that records what they ask for. So a field a parser reads is
documented (or the document fails to build, and its test with it), and a field it
stops reading disappears. Ranges come from the constants the parsers check against;
defaults from the dialect's own CutoutOptions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from ..imaging import OutputFormat
from ..operations import Field, Schema, int_schema
from ..options import MAX_ERODE_SIZE, MAX_LEVEL, OUTPUT_FORMATS, CutoutOptions
from ._common import IMAGE_MEDIA_TYPES, cutout_options

Encoding = Literal["form", "json"]

_BOOLEAN: Schema = {"type": "boolean"}
_LEVEL = int_schema(0, MAX_LEVEL)

# Each option: its value's schema (None: the output format, whose values are the
# dialect's) and what it does. The bgcolor schema differs by encoding, see _schema.
_OPTIONS: dict[str, tuple[Schema | None, str]] = {
    "output_format": (None, "The image format of the result."),
    "only_mask": (
        _BOOLEAN,
        "Return the single-channel mask (white subject) instead of the cut-out.",
    ),
    "post_process_mask": (
        _BOOLEAN,
        "Smooth the mask: opening with a disk of radius 1, Gaussian blur (sigma 2), "
        "threshold at 127.",
    ),
    "alpha_matting": (
        _BOOLEAN,
        "Refine the edges with closed-form matting and re-estimate the edge colours.",
    ),
    "alpha_matting_foreground_threshold": (
        _LEVEL,
        "Mask values above it are sure foreground; must be above the background threshold.",
    ),
    "alpha_matting_background_threshold": (_LEVEL, "Mask values below it are sure background."),
    "alpha_matting_erode_size": (
        int_schema(0, MAX_ERODE_SIZE),
        "Pixels by which both sure regions are eroded.",
    ),
    "bgcolor": ({}, "Composite the cut-out over this colour (red, green, blue, optional alpha)."),
}

_CHANNELS = {"type": "integer", "minimum": 0, "maximum": 255}
_BGCOLOR: dict[Encoding, Schema] = {
    "form": {"type": "string", "examples": ["255,0,0", "[255, 0, 0, 255]"]},
    "json": {"type": "array", "items": _CHANNELS, "minItems": 3, "maxItems": 4},
}


def form_option_fields(
    defaults: CutoutOptions, formats: tuple[OutputFormat, ...] = OUTPUT_FORMATS
) -> tuple[Field, ...]:
    """The option fields `defaults.with_fields` reads from a form, in its order."""
    asked: list[str] = []

    def ask(name: str) -> str | None:
        asked.append(name)
        return None

    defaults.with_fields(ask, formats)
    return tuple(_option(name, defaults, "form", formats) for name in dict.fromkeys(asked))


def json_option_fields(defaults: CutoutOptions, ignored: tuple[str, ...] = ()) -> tuple[Field, ...]:
    """The option fields `cutout_options` reads from a JSON body, less `ignored` (fields
    the dialect blanks out before calling it)."""
    body = _Asked()
    cutout_options(body, defaults)
    names = [name for name in dict.fromkeys(body.asked) if name not in ignored]
    return tuple(_option(name, defaults, "json", OUTPUT_FORMATS) for name in names)


def json_image(name: str, description: str = "") -> Field:
    """A required base64 image field, as `_common.to_image` reads it."""
    types = ", ".join(media.removeprefix("image/") for media in IMAGE_MEDIA_TYPES)
    rule = (
        f"Bare base64 or a `data:image/({types.replace(', ', '|')});base64,...` URL; line "
        "breaks and missing padding are forgiven. The bytes must be a JPEG, PNG or WebP image."
    )
    return Field(
        name,
        {"type": "string", "contentEncoding": "base64"},
        f"{description} {rule}".strip(),
        required=True,
    )


def _option(
    name: str, defaults: CutoutOptions, encoding: Encoding, formats: tuple[OutputFormat, ...]
) -> Field:
    if name not in _OPTIONS:
        raise ValueError(f"the option field {name!r} has no description in dialects/_fields.py")
    schema, description = _OPTIONS[name]
    if schema is None:
        schema = {"type": "string", "enum": list(formats)}
    elif name == "bgcolor":
        schema = _BGCOLOR[encoding]
    default = getattr(defaults, name)
    if default is not None:
        schema = {**schema, "default": default}
    return Field(name, schema, description)


class _Asked(Mapping[str, object]):
    """An empty JSON body that records every field asked of it."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __getitem__(self, name: str) -> object:
        self.asked.append(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
