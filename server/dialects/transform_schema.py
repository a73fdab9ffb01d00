"""The IMG Processing transforms' body fields, recorded from their parsers.

Each transform's parser reads its body through a `Fields` (server/transform_fields.py),
whose readers name the field, its type and its range: `optional_int("width", 1, 9999)`.
Running the parser once over an empty body with a `Fields` that records those calls
gives its fields without a second list to keep in step: the required ones are those
the empty body is refused for ("x1: is required"), and the body-wide rules are its
"body: ..." problems. What a parser cannot say (what a field is for, the default it
applies when one is absent) is in the table below; a recorded field missing from it,
or a described field the parser no longer reads, fails the description (and its test).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .. import transforms
from ..colours import COLOUR_HELP, RGBA
from ..operations import Field, Schema, int_schema, obj
from ..transform_base import DEFAULT_QUALITY
from ..transform_fields import Fields
from ..transform_watermark import MAX_WATERMARKS

T = TypeVar("T")

# `prefix[0].`: the fields of a list's items (the watermark objects).
_ITEM_PREFIX = re.compile(r"(\w+)\[0\]\.")
_REQUIRED = "is required"


@dataclass(frozen=True)
class _Op:
    summary: str
    fields: Mapping[str, str]  # name: what it does (a list's items: "list.item")
    defaults: Mapping[str, object] = field(default_factory=dict)
    # A body for the second run that reaches the fields of a list's items.
    sample: Mapping[str, object] = field(default_factory=dict)
    # The list fields' schema beyond their items (lengths).
    lists: Mapping[str, Schema] = field(default_factory=dict)


_POSITION = "Where the picture sits in the spare room (contain) or what is kept (cover)."
_OPS: dict[str, _Op] = {
    "convert": _Op(
        "Convert to another format",
        {
            "format": "The new format; a transparent image becomes JPEG on white.",
            "quality": "JPEG and WebP quality (PNG is lossless).",
        },
        {"quality": DEFAULT_QUALITY},
    ),
    "resize": _Op(
        "Resize",
        {
            "width": "Pixels; with only one side given the aspect ratio is kept.",
            "height": "Pixels; with only one side given the aspect ratio is kept.",
            "fit": "fill stretches; contain letterboxes; cover crops.",
            "position": _POSITION,
            "letterbox_color": "The letterbox of `contain`.",
        },
        {"fit": "fill", "position": "center", "letterbox_color": "transparent"},
    ),
    "crop": _Op(
        "Crop",
        {
            "x1": "The box's left edge, in pixels of the source.",
            "y1": "The box's top edge, in pixels of the source.",
            "x2": "The box's right edge (exclusive): greater than x1, at most the width.",
            "y2": "The box's bottom edge (exclusive): greater than y1, at most the height.",
        },
    ),
    "rotate": _Op(
        "Rotate clockwise",
        {
            "angle": "The canvas grows to fit.",
            "unit": "What `angle` counts.",
            "background_color": "The new corners.",
        },
        {"unit": "degrees", "background_color": "transparent"},
    ),
    "mirror": _Op("Mirror", {"mode": "The axis to flip across (both: a half turn)."}),
    "blur": _Op(
        "Gaussian blur",
        {"sigma": "The Gaussian's standard deviation, in pixels."},
        {"sigma": transforms.DEFAULT_SIGMA},
    ),
    "modulate": _Op(
        "Adjust brightness, saturation, hue, lightness, contrast, exposure",
        {
            "brightness": "A multiplier (1: unchanged).",
            "saturation": "A multiplier (1: unchanged).",
            "contrast": "A multiplier (1: unchanged).",
            "exposure": "A multiplier (1: unchanged).",
            "hue": "Degrees to turn the hue by.",
            "lightness": "Added to the lightness.",
        },
    ),
    "watermark": _Op(
        "Lay watermarks over the image",
        {
            "watermarks": "The images to lay over the source, in order.",
            "watermarks.id": "A stored image of the same key.",
            "watermarks.left": "Pixels from the left edge.",
            "watermarks.top": "Pixels from the top edge.",
            "watermarks.width": "Pixels; with one side given the aspect ratio is kept.",
            "watermarks.height": "Pixels; with one side given the aspect ratio is kept.",
            "watermarks.repetition_mode": "Tile it across the image, along one axis or both.",
        },
        {"watermarks.left": 0, "watermarks.top": 0, "watermarks.repetition_mode": "no_repeat"},
        sample={"watermarks": [{}]},
        lists={"watermarks": {"minItems": 1, "maxItems": MAX_WATERMARKS}},
    ),
}


@dataclass(frozen=True)
class TransformFields:
    summary: str
    fields: tuple[Field, ...]  # `name` aside, which the dialect reads
    rules: tuple[str, ...]  # what the body as a whole must do


def transform_fields(op: str) -> TransformFields:
    """What `op`'s parser reads, and what the table above says of it."""
    described = _OPS[op]
    parse = transforms.reader(op)
    plain = _Recorder({})
    parse(plain)
    sampled = _Recorder(described.sample)
    parse(sampled)
    required = {
        problem.removesuffix(": " + _REQUIRED)
        for problem in plain.problems + sampled.problems
        if problem.endswith(": " + _REQUIRED)
    }
    fields = [
        _field(name, schema, described, name in required) for name, schema in plain.seen.items()
    ]
    seen = set(plain.seen)
    for name, child in sampled.children.items():
        items = [
            _field(f"{name}.{key}", schema, described, f"{name}[0].{key}" in required)
            for key, schema in child.seen.items()
        ]
        item = obj(
            {key: _described(item) for key, item in zip(child.seen, items, strict=True)},
            [key for key, item in zip(child.seen, items, strict=True) if item.required],
        )
        schema = {"type": "array", "items": item, **described.lists.get(name, {})}
        fields.append(_field(name, schema, described, name in required))
        seen |= {name, *(f"{name}.{key}" for key in child.seen)}
    rules = tuple(p.removeprefix("body: ") for p in plain.problems if p.startswith("body: "))
    stale = set(described.fields) - seen
    if stale:
        raise ValueError(f"{op}: described fields its parser does not read: {sorted(stale)}")
    return TransformFields(described.summary, tuple(fields), rules)


def _field(name: str, schema: Schema, described: _Op, required: bool) -> Field:
    if name not in described.fields:
        raise ValueError(f"the transform field {name!r} has no description")
    default = described.defaults.get(name)
    if default is not None:
        schema = {**schema, "default": default}
    return Field(name, schema, described.fields[name], required)


def _described(field: Field) -> Schema:
    return {**field.schema, "description": field.description} if field.description else field.schema


class _Recorder(Fields):
    """A Fields that notes each field a parser reads, with its schema."""

    def __init__(self, body: Mapping[str, object], prefix: str = "") -> None:
        super().__init__(body, prefix)
        self.seen: dict[str, Schema] = {}
        self.children: dict[str, _Recorder] = {}

    def child(self, body: Mapping[str, object], prefix: str) -> Fields:
        child = _Recorder(body, prefix)
        child.problems, child._failed = self.problems, self._failed
        match = _ITEM_PREFIX.fullmatch(prefix)
        if match is not None:
            self.children.setdefault(match.group(1), child)
        return child

    def optional_int(self, key: str, low: int | None = None, high: int | None = None) -> int | None:
        self.seen.setdefault(key, int_schema(low, high))
        return super().optional_int(key, low, high)

    def required_int(self, key: str, low: int = 0, high: int | None = None) -> int:
        self.seen.setdefault(key, int_schema(low, high))
        return super().required_int(key, low, high)

    def optional_number(
        self, key: str, low: float | None = None, high: float | None = None
    ) -> float | None:
        self.seen.setdefault(key, _number_schema(low, high))
        return super().optional_number(key, low, high)

    def required_number(
        self, key: str, low: float | None = None, high: float | None = None
    ) -> float:
        self.seen.setdefault(key, _number_schema(low, high))
        return super().required_number(key, low, high)

    def optional_choice(
        self, key: str, options: Mapping[str, T], shown: Sequence[str] | None = None
    ) -> T | None:
        self.seen.setdefault(key, {"type": "string", "enum": list(shown or options)})
        return super().optional_choice(key, options, shown)

    def required_choice(
        self, key: str, options: Mapping[str, T], shown: Sequence[str] | None = None
    ) -> T:
        self.seen.setdefault(key, {"type": "string", "enum": list(shown or options)})
        return super().required_choice(key, options, shown)

    def optional_colour(self, key: str) -> RGBA | None:
        self.seen.setdefault(key, {"type": "string", "description": COLOUR_HELP})
        return super().optional_colour(key)

    def required_string(self, key: str) -> str:
        self.seen.setdefault(key, {"type": "string", "minLength": 1})
        return super().required_string(key)


def _number_schema(low: float | None, high: float | None) -> Schema:
    schema: Schema = {"type": "number"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema
