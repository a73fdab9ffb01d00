"""What every JSON dialect shares: the body, typed fields, base64 images, cut-out options.

Conventions, the same in every JSON dialect:

- A field that is absent or `null` is "not sent": its default applies.
- Unknown fields are ignored (clients send their own extras: `prompt`, `n`, ...).
- A wrong type or a value out of range is a `BadRequest` naming the field
  (`error.field`, and the message starts with it), never a 500: clients retry 5xx.
- Booleans are JSON `true`/`false` or the strings "true"/"false" in any case
  (JavaScript's String(true) is "true", Python's str(True) is "True"). Numbers and
  yes/no/on/off are refused: the form parser takes those because HTML forms and
  curl -F send them, but in JSON they are more likely a mistake than a boolean.
- Integers are JSON integers, integral numbers (240.0) or integer strings ("240"),
  as FastAPI's lax parsing (OctoAI's own server) accepts; never booleans.
- Images are bare base64 or `data:image/(png|jpeg|jpg|webp);base64,...`; the
  decoded bytes then meet the pipeline's own decode limits.

Errors carry `field` and `problem` (see errors.py); each dialect renders them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Mapping

from starlette.requests import Request

from ..admission import Ticket
from ..errors import BadRequest
from ..options import MAX_ERODE_SIZE, MAX_LEVEL, CutoutOptions
from ..pipeline import Cutout, Pipeline
from ..settings import Settings
from ..transform_fields import int_range

JsonObject = dict[str, object]

# Media types a data URL may name; the bytes are sniffed anyway (imaging.decode).
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/webp")

_INTEGER_TEXT = re.compile(r"[+-]?\d{1,9}")
_WHITESPACE = re.compile(rb"\s+")


# --- the body ------------------------------------------------------------------------------


async def read_json_object(request: Request) -> JsonObject:
    """The request's body as a JSON object.

    It streams in under the body limit (BodyLimit raises PayloadTooLarge from
    `receive`, so the dialect renders the 413). The Content-Type is not checked:
    `curl -d` sends form-urlencoded by default, and the body says what it is.
    """
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
    return parse_json_object(body)


def parse_json_object(body: bytes | bytearray) -> JsonObject:
    """A body already read, as a JSON object (for a dialect that reads the body first
    to see which of its encodings it is)."""
    if not body.strip():
        raise BadRequest("body: is required: a JSON object", field="body", problem="missing")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError: bad JSON or bad UTF-8; RecursionError: nesting too deep to parse.
        raise BadRequest("body: is not valid JSON", field="body", problem="json_invalid") from None
    if not isinstance(value, dict):
        raise BadRequest("body: must be a JSON object", field="body", problem="type_error")
    return value


# --- fields of an object -------------------------------------------------------------------


def get(body: Mapping[str, object], name: str) -> object | None:
    """The field's value; None when it is absent or null (not sent)."""
    return body.get(name)


def require(body: Mapping[str, object], name: str, field: str | None = None) -> object:
    """The field's value, or a `missing` error naming `field` (default: `name`)."""
    value = body.get(name)
    if value is None:
        label = field or name
        raise BadRequest(f"{label}: is required", field=label, problem="missing")
    return value


def boolean(body: Mapping[str, object], name: str, default: bool) -> bool:
    value = body.get(name)
    return default if value is None else to_bool(value, name)


def integer(
    body: Mapping[str, object],
    name: str,
    default: int,
    low: int | None = None,
    high: int | None = None,
) -> int:
    value = body.get(name)
    return default if value is None else to_int(value, name, low, high)


def optional_integer(
    body: Mapping[str, object], name: str, low: int | None = None, high: int | None = None
) -> int | None:
    value = body.get(name)
    return None if value is None else to_int(value, name, low, high)


def optional_string(body: Mapping[str, object], name: str) -> str | None:
    value = body.get(name)
    return None if value is None else to_str(value, name)


def image(body: Mapping[str, object], name: str) -> bytes:
    """A required base64 image field, decoded (see `to_image`)."""
    return to_image(require(body, name), name)


# --- values --------------------------------------------------------------------------------


def to_bool(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.lower()
        if text == "true":
            return True
        if text == "false":
            return False
    raise BadRequest(f"{field}: must be true or false", field=field, problem="type_error")


def to_int(value: object, field: str, low: int | None = None, high: int | None = None) -> int:
    """An integer within [low, high] (either bound may be open)."""
    number: int | None = None
    # bool is an int subclass in Python, but `true` is not a number in JSON.
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        number = int(value) if _INTEGER_TEXT.fullmatch(value) else None
    if number is None:
        raise BadRequest(_int_message(field, low, high), field=field, problem="type_error")
    if (low is not None and number < low) or (high is not None and number > high):
        raise BadRequest(_int_message(field, low, high), field=field, problem="value_error")
    return number


def to_str(value: object, field: str) -> str:
    if isinstance(value, str):
        return value
    raise BadRequest(f"{field}: must be a string", field=field, problem="type_error")


def to_object(value: object, field: str) -> JsonObject:
    if isinstance(value, dict):
        return value
    raise BadRequest(f"{field}: must be an object", field=field, problem="type_error")


def to_list(value: object, field: str) -> list[object]:
    if isinstance(value, list):
        return value
    raise BadRequest(f"{field}: must be a list", field=field, problem="type_error")


def to_bgcolor(value: object, field: str) -> tuple[int, ...]:
    """A list of 3 or 4 integers 0-255: red, green, blue and optionally alpha."""
    message = f"{field}: must be a list of 3 or 4 integers from 0 to 255, like [255, 0, 0]"
    if not isinstance(value, list) or len(value) not in (3, 4):
        raise BadRequest(message, field=field, problem="type_error")
    channels: list[int] = []
    for item in value:
        if not isinstance(item, int) or isinstance(item, bool):
            raise BadRequest(message, field=field, problem="type_error")
        if not 0 <= item <= 255:
            raise BadRequest(message, field=field, problem="value_error")
        channels.append(item)
    return tuple(channels)


def to_image(value: object, field: str) -> bytes:
    """Image bytes from bare base64 or a base64 `data:image/...` URL.

    Whitespace (line-wrapped base64, as `base64` prints it) and missing `=`
    padding are forgiven; anything else that is not base64 is refused. The
    bytes are not checked here: the pipeline's decode sniffs the format and
    applies the size limits.
    """
    text = to_str(value, field).strip()
    if not text:
        raise BadRequest(f"{field}: must not be empty", field=field, problem="value_error")
    lowered = text[:8].lower()
    if lowered.startswith(("http://", "https://")):
        raise BadRequest(
            f"{field}: must be base64 or a data: URL; this server takes inline images only",
            field=field,
        )
    if lowered.startswith("data:"):
        text = _data_url_payload(text, field)
    payload = _WHITESPACE.sub(b"", text.encode("ascii", "replace"))
    try:
        data = base64.b64decode(payload + b"=" * (-len(payload) % 4), validate=True)
    except binascii.Error:
        data = b""
    if not data:
        raise BadRequest(f"{field}: is not valid base64", field=field)
    return data


def _data_url_payload(text: str, field: str) -> str:
    header, comma, payload = text.partition(",")
    media_type, *params = header[len("data:") :].split(";")
    if not comma or not params or params[-1].strip().lower() != "base64":
        raise BadRequest(
            f"{field}: must be a base64 data URL, like data:image/png;base64,...", field=field
        )
    if media_type.strip().lower() not in IMAGE_MEDIA_TYPES:
        raise BadRequest(
            f"{field}: the data URL must be an image/png, image/jpeg or image/webp image",
            field=field,
        )
    return payload


def _int_message(field: str, low: int | None, high: int | None) -> str:
    return f"{field}: {int_range(low, high)}"


# --- options and the cut-out ---------------------------------------------------------------


def cutout_options(body: Mapping[str, object], defaults: CutoutOptions) -> CutoutOptions:
    """The rembg-style option fields, named as in CutoutOptions, over the dialect's
    `defaults`; the output format is the dialect's own business and stays as given."""
    bgcolor = body.get("bgcolor")
    options = dataclasses.replace(
        defaults,
        only_mask=boolean(body, "only_mask", defaults.only_mask),
        post_process_mask=boolean(body, "post_process_mask", defaults.post_process_mask),
        alpha_matting=boolean(body, "alpha_matting", defaults.alpha_matting),
        alpha_matting_foreground_threshold=integer(
            body,
            "alpha_matting_foreground_threshold",
            defaults.alpha_matting_foreground_threshold,
            0,
            MAX_LEVEL,
        ),
        alpha_matting_background_threshold=integer(
            body,
            "alpha_matting_background_threshold",
            defaults.alpha_matting_background_threshold,
            0,
            MAX_LEVEL,
        ),
        alpha_matting_erode_size=integer(
            body, "alpha_matting_erode_size", defaults.alpha_matting_erode_size, 0, MAX_ERODE_SIZE
        ),
        bgcolor=defaults.bgcolor if bgcolor is None else to_bgcolor(bgcolor, "bgcolor"),
    )
    return options.checked()


async def cut_out(
    request: Request,
    pipeline: Pipeline,
    ticket: Ticket,
    data: bytes,
    options: CutoutOptions,
    field: str,
) -> Cutout:
    """`pipeline.cutout` (dropped if the client of `request`, whose body is read,
    goes away), with the image's decode errors (bad bytes, sizes) naming
    the dialect's image `field`: the options were checked before, so the image is
    the only client input the pipeline can refuse."""
    try:
        return await pipeline.cutout(ticket, data, options, request.receive)
    except BadRequest as error:
        if error.field is None:
            error.field = field
        raise


def base_url(request: Request, settings: Settings) -> str:
    """Where clients reach this server, for URLs in replies: MATTE_PUBLIC_BASE_URL
    (behind a proxy), else the request's own base URL."""
    if settings.public_base_url:
        return settings.public_base_url
    return str(request.base_url).rstrip("/")


def b64encode(data: bytes) -> str:
    """Bare base64 text (no data: prefix, no line breaks)."""
    return base64.b64encode(data).decode("ascii")
