"""Photoroom's Remove Background API (Basic plan): `POST /v1/segment`.

The contract follows Photoroom's published OpenAPI document for sdk.photoroom.com:

- multipart/form-data with `image_file` (required) and the text fields `format`
  (png, jpg, webp), `channels` (rgba, alpha), `bg_color` (hex, `#` optional, or an
  HTML colour name), `size` (preview, medium, hd, full), `crop` and `despill`
  ("true"/"false"). Unknown fields are ignored.
- The key is the `x-api-key` header; a missing or wrong one is a 403.
- 200: the image itself, or `{"base64img": "<base64>"}` when the client sends
  `Accept: application/json`.
- Errors: `{"detail": "<text>", "status_code": <status>, "type": "<kind>"}`, with
  `missing_image` when there is no image.
"""

from __future__ import annotations

from typing import Literal

from python_multipart.multipart import parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import ApiError, BadRequest, Unauthorized
from ..forms import Form, read_form
from ..operations import Api
from ..option_text import parse_color, photoroom_size
from ..options import CutoutOptions, parse_bool, parse_format
from ..services import services_of
from . import photoroom_api
from ._common import b64encode, cut_out
from .photoroom_api import (
    BG_COLOR,
    CHANNEL,
    CHANNELS,
    CROP,
    DESPILL,
    FORMAT,
    FORMATS,
    IMAGE,
    SIZE,
)

PATH = "/v1/segment"
IMAGE_FIELD = IMAGE.name
KEY_MESSAGE = "x-api-key: invalid or missing API key"

Reply = Literal["image", "json"]


class PhotoroomDialect:
    name = "photoroom"

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.segment, methods=["POST"])]

    def api(self) -> Api:
        return photoroom_api.describe(self.name, PATH)

    def render_error(self, error: ApiError, request_id: str) -> Response:
        unauthorized = isinstance(error, Unauthorized)
        # Photoroom answers a bad key with 403, not 401.
        status = 403 if unauthorized else error.status
        detail = KEY_MESSAGE if unauthorized else " ".join(error.messages)
        return JSONResponse(
            {"detail": detail, "status_code": status, "type": error_type(error)},
            status_code=status,
            headers=error.headers,
        )

    async def segment(self, request: Request) -> Response:
        request.state.dialect = self
        services = services_of(request)
        pipeline = await services.admit(request, request.headers.get("x-api-key") or None)
        reply = reply_kind(request.headers.get("accept"))
        # The ticket comes before the body: when the server is full, the upload is
        # refused unread.
        with pipeline.admission.ticket() as ticket:
            content_type, _ = parse_options_header(request.headers.get("content-type"))
            if content_type != b"multipart/form-data":
                # No form, so no image: Photoroom's own answer for a request without one.
                raise BadRequest(
                    f"{IMAGE_FIELD}: is required: send multipart/form-data with the image "
                    f"in {IMAGE_FIELD}",
                    field=IMAGE_FIELD,
                    problem="missing",
                )
            form = await read_form(request)
            part = form.get(IMAGE_FIELD)
            if part is None or not part.data:
                why = "is required: a jpeg, png or webp file" if part is None else "is empty"
                raise BadRequest(f"{IMAGE_FIELD}: {why}", field=IMAGE_FIELD, problem="missing")
            options = segment_options(form)
            cutout = await cut_out(
                request, pipeline, ticket, bytes(part.data), options, IMAGE_FIELD
            )
        if reply == "json":
            return JSONResponse({"base64img": b64encode(cutout.data)})
        return Response(cutout.data, media_type=cutout.media_type)


def segment_options(form: Form) -> CutoutOptions:
    """The text fields as cut-out options; empty text counts as not sent."""

    def text(name: str) -> str | None:
        value = form.text(name)
        return value or None

    raw_format, raw_channels = text(FORMAT.name), text(CHANNEL.name)
    raw_colour, raw_size = text(BG_COLOR.name), text(SIZE.name)
    raw_crop, raw_despill = text(CROP.name), text(DESPILL.name)
    output_format = "png" if raw_format is None else parse_format(FORMAT.name, raw_format, FORMATS)
    channels = "rgba" if raw_channels is None else _channels(raw_channels)
    colour = None if raw_colour is None else parse_color(BG_COLOR.name, raw_colour)
    options = CutoutOptions(
        output_format=output_format,
        # The alpha channel alone: the mask, over no background at all.
        only_mask=channels == "alpha",
        bgcolor=colour if channels == "rgba" else None,
        crop=raw_crop is not None and parse_bool(CROP.name, raw_crop),
        # "Removes coloured reflections left on the subject by a green background":
        # the edge colours re-estimated without the old background.
        decontaminate=raw_despill is not None and parse_bool(DESPILL.name, raw_despill),
        max_output_pixels=None if raw_size is None else photoroom_size(raw_size, SIZE.name),
    )
    return options.checked(FORMATS)


def _channels(raw: str) -> str:
    value = raw.lower()
    if value not in CHANNELS:
        name = CHANNEL.name
        raise BadRequest(f"{name}: must be one of {', '.join(CHANNELS)}", field=name)
    return value


def reply_kind(accept: str | None) -> Reply:
    """JSON when the client asks for it; the image for anything else (Photoroom's
    clients send `image/*`, `*/*` or nothing)."""
    if accept is None:
        return "image"
    ranges = [item.partition(";")[0].strip().lower() for item in accept.split(",")]
    return "json" if "application/json" in ranges else "image"


def error_type(error: ApiError) -> str:
    """The body's `type`: Photoroom's `missing_image`, then kinds named after the field
    at fault or, for other errors, Matte's error name (rate_limit_exceeded, ...)."""
    if isinstance(error, Unauthorized):
        return "invalid_api_key"
    if isinstance(error, BadRequest):
        if error.field == IMAGE_FIELD:
            return "missing_image" if error.problem == "missing" else "invalid_image"
        return "bad_request" if error.field is None else "invalid_parameter"
    return error.name
