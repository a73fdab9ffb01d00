"""remove.bg's request: the body (multipart, urlencoded or JSON) as text fields and
files, and the job those fields ask for.

What its clients send (remove.bg's docs, the npm `remove.bg` and PyPI `removebg`
wrappers, remove.bg's own Ruby gem):

- multipart with `image_file` (a part with a file name or without, with an image
  content type, `application/octet-stream` or none); urlencoded (Python requests'
  `data=` with `image_url` or `image_file_b64`, the Ruby gem's URL calls); or JSON
  (the npm wrapper: `image_file_b64` or `image_url`, JSON booleans, fields it was
  not given left out).
- Booleans as text (`true`/`false`, and 1/0, yes/no, on/off as forms send them).
- The PyPI wrapper sends every field on every call, at its defaults (`roi=0 0 100%
  100%`, `scale=original`, `position=original`, `crop=false`, `type_level=none`,
  ...), so each documented value is accepted; an empty value counts as not sent.

A wrong value is a BadRequest naming its field, which the dialect answers as
remove.bg's `invalid_<field>`; `Refusal` carries the codes that are not about one
field's value (`missing_source`, `multiple_sources`, ...).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qsl

from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from ..errors import BadRequest
from ..forms import MAX_PARTS, read_form
from ..option_text import (
    CENTER,
    Length,
    Margin,
    Region,
    parse_color,
    parse_margin,
    parse_position,
    parse_region,
    parse_scale,
    parse_size,
)
from ..options import ALL_OUTPUT_FORMATS, CutoutOptions, parse_bool, parse_format
from ..outbound import Outbound, OutboundError
from ._common import parse_json_object, to_image

SOURCES = ("image_file", "image_file_b64", "image_url")
BACKGROUNDS = ("bg_color", "bg_image_url", "bg_image_file")
FILES = ("image_file", "bg_image_file")  # only a multipart body can carry them
TYPES = (
    "auto",
    "person",
    "product",
    "animal",
    "car",
    "car_interior",
    "car_part",
    "transportation",
    "graphic",
    "graphics",
    "other",
)
# What type_level=1 (coarse) reports for the specific types; `graphics` is the PyPI
# wrapper's spelling of `graphic` at every level.
_COARSE = {"car_interior": "car", "car_part": "car"}
TYPE_LEVELS = ("none", "latest", "1", "2")
CHANNELS = ("rgba", "alpha")
SHADOW_TYPES = ("none", "car", "3d", "drop")
MAX_SHADOW_OPACITY = 100
# Sizes billed as a preview; every other size is 1 credit.
PREVIEW_SIZES = ("preview", "small", "regular")
PREVIEW_CREDITS, FULL_CREDITS = 0.25, 1.0
DEFAULT_SIZE = "preview"  # remove.bg's default, so a bare call gets 0.25 MP
DEFAULTS = CutoutOptions(output_format="auto")
_WHOLE = Length(100.0, "%")

T = TypeVar("T")


class Refusal(BadRequest):
    """A 400 with a remove.bg code of its own; a plain BadRequest naming a field is
    answered as `invalid_<field>`."""

    def __init__(self, code: str, title: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.code = code
        self.title = title


@dataclass(frozen=True)
class Fields:
    """The body's fields: text (stripped; empty ones dropped) and files (multipart)."""

    texts: Mapping[str, str]
    files: Mapping[str, bytes]

    def text(self, name: str) -> str | None:
        return self.texts.get(name)

    def sent(self, name: str) -> bool:
        return name in self.texts or name in self.files


@dataclass(frozen=True)
class Source:
    """An image the request names: bytes that came with it, or a URL to fetch."""

    field: str
    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True)
class Job:
    image: Source
    background: Source | None  # bg_image_file or bg_image_url (a bg_color is in options)
    options: CutoutOptions  # without bg_image: the dialect fetches it and adds it
    credits: float
    foreground_type: str | None  # X-Type; None for type_level=none


# --- the body ------------------------------------------------------------------------------


async def read_fields(request: Request) -> Fields:
    """The body's fields, whichever of the three encodings it came in. Without a
    content type the body says what it is: `{` opens JSON, anything else is
    urlencoded (what `curl -d` sends)."""
    content_type, _ = parse_options_header(request.headers.get("content-type"))
    if content_type == b"multipart/form-data":
        return await _multipart(request)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
    if content_type == b"application/json" or (
        content_type != b"application/x-www-form-urlencoded" and body.lstrip()[:1] == b"{"
    ):
        return _json(parse_json_object(body))
    return _urlencoded(bytes(body))


async def _multipart(request: Request) -> Fields:
    try:
        form = await read_form(request)
    except BadRequest as error:
        if error.field is None:
            error.field = "body"
        raise
    texts: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in form.parts:
        if part.name in texts or part.name in files:
            raise BadRequest(f"{part.name}: must be sent only once", field=part.name)
        if part.name in FILES:
            if part.data:
                files[part.name] = bytes(part.data)
            continue
        try:
            text = part.text()
        except BadRequest as error:
            error.field = part.name
            raise
        if text:
            texts[part.name] = text
    return Fields(texts, files)


def _urlencoded(body: bytes) -> Fields:
    try:
        pairs = parse_qsl(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_PARTS
        )
    except ValueError:
        raise BadRequest(f"body: at most {MAX_PARTS} fields are allowed", field="body") from None
    texts: dict[str, str] = {}
    for name, value in pairs:
        if name in texts:
            raise BadRequest(f"{name}: must be sent only once", field=name)
        if value.strip():
            texts[name] = value.strip()
    if "image_file_b64" in texts:
        # Base64 has no spaces: a '+' sent unescaped (a hand-built body) arrives as one.
        texts["image_file_b64"] = texts["image_file_b64"].replace(" ", "+")
    return _no_files(Fields(texts, {}))


def _json(body: Mapping[str, object]) -> Fields:
    texts: dict[str, str] = {}
    for name, value in body.items():
        text = _json_text(name, value)
        if text:
            texts[name] = text
    return _no_files(Fields(texts, {}))


def _json_text(name: str, value: object) -> str | None:
    """A JSON value as the text a form would carry: the npm wrapper sends `crop` and
    `add_shadow` as JSON booleans, and numbers are fine where a form has digits."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str):
        return value.strip()
    raise BadRequest(f"{name}: must be a string", field=name, problem="type_error")


def _no_files(fields: Fields) -> Fields:
    for name in FILES:
        if name in fields.texts:
            raise BadRequest(
                f"{name}: a file can only be uploaded in a multipart/form-data body; "
                "send image_file_b64 or image_url (bg_image_url) instead",
                field=name,
            )
    return fields


# --- the job -------------------------------------------------------------------------------


def parse_job(fields: Fields, outbound: Outbound) -> Job:
    """Every field but the images' bytes, checked before any work is done."""
    image = _image_source(fields, outbound)
    size = (fields.text("size") or DEFAULT_SIZE).lower()
    max_pixels = parse_size("size", size)
    channels = _choice(fields, "channels", CHANNELS, "rgba")
    _check_ignored(fields)
    background, bgcolor = _background(fields, outbound)
    scale = _parsed(fields, "scale", parse_scale)
    position = _parsed(fields, "position", parse_position)
    if scale is not None and not fields.sent("position"):
        position = CENTER  # remove.bg: scaling implies position=center unless it is given
    options = dataclasses.replace(
        DEFAULTS,
        output_format=parse_format("format", fields.text("format") or "auto", ALL_OUTPUT_FORMATS),
        only_mask=channels == "alpha",
        # remove.bg corrects the edge colours of its rgba results.
        decontaminate=channels == "rgba",
        crop=_flag(fields, "crop", False),
        crop_margin=_margin(fields),
        roi=_roi(fields),
        scale=scale,
        position=position,
        bgcolor=bgcolor,
        max_output_pixels=max_pixels,
    ).checked(ALL_OUTPUT_FORMATS)
    credits = PREVIEW_CREDITS if size in PREVIEW_SIZES else FULL_CREDITS
    return Job(image, background, options, credits, _foreground_type(fields))


def _image_source(fields: Fields, outbound: Outbound) -> Source:
    given = [name for name in SOURCES if fields.sent(name)]
    if not given:
        raise Refusal(
            "missing_source",
            "No image given",
            "image_file, image_file_b64 or image_url: one of them is required",
        )
    if len(given) > 1:
        raise Refusal(
            "multiple_sources",
            "Multiple image sources given",
            f"{', '.join(given)}: send only one of image_file, image_file_b64 and image_url",
        )
    name = given[0]
    if name == "image_file":
        return Source(name, data=fields.files[name])
    text = fields.texts[name]
    if name == "image_file_b64":
        return Source(name, data=to_image(text, name))
    return Source(name, url=_checked_url(outbound, name, text))


def _background(fields: Fields, outbound: Outbound) -> tuple[Source | None, tuple[int, ...] | None]:
    given = [name for name in BACKGROUNDS if fields.sent(name)]
    if len(given) > 1:
        raise Refusal(
            "multiple_bg_sources",
            "Multiple backgrounds given",
            f"{', '.join(given)}: send only one of bg_color, bg_image_url and bg_image_file",
        )
    if not given:
        return None, None
    name = given[0]
    if name == "bg_color":
        return None, parse_color(name, fields.texts[name])
    if name == "bg_image_file":
        return Source(name, data=fields.files[name]), None
    return Source(name, url=_checked_url(outbound, name, fields.texts[name])), None


def _checked_url(outbound: Outbound, name: str, url: str) -> str:
    """The URL, once the outbound guard would fetch it (refused at once otherwise)."""
    try:
        outbound.check_url(url)
    except OutboundError as error:
        raise BadRequest(f"{name}: {error.reason}", field=name) from None
    return url


def _margin(fields: Fields) -> Margin:
    raw = fields.text("crop_margin")
    # The PyPI wrapper's crop=True is sent as crop=true plus crop_margin=True.
    if raw is None or raw.lower() in ("true", "false"):
        return Margin()
    return parse_margin("crop_margin", raw)


def _roi(fields: Fields) -> Region | None:
    region = _parsed(fields, "roi", parse_region)
    if region is None:
        return None
    # The whole image (the documented default, which the PyPI wrapper always sends)
    # is no region at all: the pipeline then skips the pass.
    starts = (region.x1.value, region.y1.value) == (0, 0)
    return None if starts and region.x2 == _WHOLE and region.y2 == _WHOLE else region


def _foreground_type(fields: Fields) -> str | None:
    """What X-Type says. Matte does not classify: a `type` given is echoed (coarse at
    type_level 1), and `auto` reports `other`."""
    given = _choice(fields, "type", TYPES, "auto")
    level = _choice(fields, "type_level", TYPE_LEVELS, "1")
    if level == "none":
        return None
    given = "graphic" if given == "graphics" else given
    if given == "auto":
        return "other"
    return _COARSE.get(given, given) if level == "1" else given


def _check_ignored(fields: Fields) -> None:
    """Fields Matte accepts but does not act on, still held to their documented values."""
    _flag(fields, "add_shadow", False)
    _flag(fields, "semitransparency", True)
    _choice(fields, "shadow_type", SHADOW_TYPES, "none")
    raw = fields.text("shadow_opacity")
    if raw is not None and not (raw.isascii() and raw.isdigit() and int(raw) <= MAX_SHADOW_OPACITY):
        raise BadRequest(
            f"shadow_opacity: must be an integer from 0 to {MAX_SHADOW_OPACITY}",
            field="shadow_opacity",
        )


def _choice(fields: Fields, name: str, choices: tuple[str, ...], default: str) -> str:
    raw = fields.text(name)
    if raw is None:
        return default
    if raw.lower() not in choices:
        raise BadRequest(f"{name}: must be one of {', '.join(choices)}", field=name)
    return raw.lower()


def _flag(fields: Fields, name: str, default: bool) -> bool:
    raw = fields.text(name)
    return default if raw is None else parse_bool(name, raw)


def _parsed(fields: Fields, name: str, parse: Callable[[str, str], T]) -> T | None:
    raw = fields.text(name)
    return None if raw is None else parse(name, raw)
