"""The IMG Processing API's Image object and the fields its routes share: ids,
names, `take`, and what an uploaded or fetched file must be."""

from __future__ import annotations

import datetime as dt
import re
import secrets

from ..errors import BadRequest, Unprocessable
from ..imaging import Limits, loaded
from ..storage import ImageFormat, StoredImage

IMAGES = "/v1/images"
PUBLIC_PREFIX = "/v1/public/"
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_PATTERN = re.compile(r"image_[a-z0-9]{24}")
NAME_MAX = 30
TAKE_DEFAULT, TAKE_MAX = 10, 100
_FORMATS: dict[str, ImageFormat] = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}


def image_object(image: StoredImage, base: str) -> dict[str, object]:
    url = None
    if image.public_token is not None:
        url = f"{base}{PUBLIC_PREFIX}{image.public_token}.{image.format}"
    return {
        "id": image.id,
        "name": image.name,
        "url": url,
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "size": image.size,
        "created_at": iso_millis(image.created_at),
    }


def iso_millis(moment: dt.datetime) -> str:
    """2026-12-01T12:00:00.000Z: UTC, milliseconds, as the service writes it."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def new_id() -> str:
    # 24 characters of 36: 124 bits, so ids cannot be guessed.
    return "image_" + "".join(secrets.choice(ID_ALPHABET) for _ in range(24))


def probe(data: bytes, limits: Limits) -> tuple[ImageFormat, tuple[int, int]]:
    """The image's format (from its bytes, never from a name or header) and size,
    once it has decoded completely within the limits, as the pipeline decodes."""
    try:
        with loaded(data, limits) as image:
            return _FORMATS[str(image.format)], image.size
    except BadRequest as error:
        raise Unprocessable(list(error.messages), field="image") from None


def name_field(value: object, required: bool, problems: list[str] | None = None) -> str | None:
    """A `name` of 1-30 characters; None when optional and not sent."""
    problem = None
    text = value.strip() if isinstance(value, str) else value
    if text is None or text == "":
        if required:
            problem = "name: is required"
    elif not isinstance(text, str):
        problem = "name: must be a string"
    elif len(text) > NAME_MAX:
        problem = f"name: must be at most {NAME_MAX} characters"
    if problem is not None:
        if problems is None:
            raise Unprocessable([problem])
        problems.append(problem)
        return None
    return text if isinstance(text, str) and text else None


def query_value(raw: str | None) -> str | None:
    """A query parameter, None when not sent. The SDK's listImages builds its query
    from an object with ky, which writes an option left out as the text
    "undefined" (`?take=undefined&from=undefined`): that counts as not sent too."""
    if raw is None or raw.strip() in ("", "undefined", "null"):
        return None
    return raw


def take_field(raw: str | None) -> int:
    if raw is None:
        return TAKE_DEFAULT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= TAKE_MAX:
        raise Unprocessable([f"take: must be an integer from 1 to {TAKE_MAX}"])
    return int(raw)


def not_found(image_id: str) -> str:
    return f"Image with id {image_id} not found."
