"""Stability AI's `POST /v2beta/stable-image/edit/remove-background`.

The contract follows Stability's published OpenAPI spec, so its clients work
by changing only their base URL.
"""

from __future__ import annotations

import base64
from typing import Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import operations
from ..errors import ApiError, BadRequest, RateLimited
from ..forms import read_form
from ..operations import (
    BEARER,
    BODY_ERRORS,
    JSON,
    KEY_ERRORS,
    MODEL_ERRORS,
    MULTIPART,
    SERVER_ERROR,
    Api,
    Body,
    ErrorShape,
    Operation,
    obj,
    upload,
)
from ..options import CutoutOptions
from ..services import services_of
from ._fields import form_option_fields

PATH = "/v2beta/stable-image/edit/remove-background"
# rembg's defaults: Stability's clients send none of the option fields.
DEFAULTS = CutoutOptions()
IMAGE = upload(
    "image",
    "JPEG, PNG or WebP (read from the bytes), a still image; each side at least 64 px, "
    "4,096 to 4,194,304 pixels. EXIF orientation is applied.",
)
_BINARY = {"type": "string", "format": "binary"}
SUCCESS = operations.Reply(
    200,
    "The cut-out (or mask), as the image itself or, for `Accept: application/json`, as "
    "base64 with `content-type: application/json; type=image/png` (or webp).",
    {
        "image/png": _BINARY,
        "image/webp": _BINARY,
        JSON: obj(
            {
                "image": {"type": "string", "contentEncoding": "base64"},
                "finish_reason": {"const": "SUCCESS"},
                "seed": {"const": 0},
            },
            ["image", "finish_reason", "seed"],
        ),
    },
    {"finish-reason": "`SUCCESS` (image replies)", "seed": "`0` (image replies)"},
)
ERROR = ErrorShape(
    "StabilityError",
    obj(
        {
            "id": {"type": "string", "description": "the request id (`x-request-id`)"},
            "name": {"type": "string", "examples": ["bad_request"]},
            "errors": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
        ["id", "name", "errors"],
        examples=[{"id": "0f1e...", "name": "bad_request", "errors": ["image: is required"]}],
    ),
)

Reply = Literal["image", "json"]


class StabilityDialect:
    name = "stability"

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.remove_background, methods=["POST"])]

    def api(self) -> Api:
        operation = Operation(
            "POST",
            (PATH,),
            "Remove the background",
            "`Accept: image/*` (also missing or `*/*`) answers the image itself; "
            "`application/json` answers it as base64; any other `Accept` is a 400. "
            "Fields other than these (`mode`, `prompt`, ...) are ignored.",
            body=Body(MULTIPART, (IMAGE, *form_option_fields(DEFAULTS))),
            replies=(SUCCESS,),
            errors={
                400: "a field is missing or invalid (the message names it), or `accept` is "
                "neither image/* nor application/json",
                **KEY_ERRORS,
                **BODY_ERRORS,
                **MODEL_ERRORS,
                **SERVER_ERROR,
            },
            auth=(BEARER,),
        )
        return Api(
            self.name,
            "Stability AI",
            "Stability AI's `remove-background` (v2beta). The key goes in "
            "`authorization`, as `Bearer <key>` or bare. Form booleans are true/false, "
            "1/0, yes/no or on/off; an empty field counts as not sent.",
            ERROR,
            (operation,),
        )

    def render_error(self, error: ApiError, request_id: str) -> Response:
        # Stability's 429 body carries a fixed id rather than the request's.
        body_id = "rate_limit_exceeded" if isinstance(error, RateLimited) else request_id
        return JSONResponse(
            {"id": body_id, "name": error.name, "errors": list(error.messages)},
            status_code=error.status,
            headers=error.headers,
        )

    async def remove_background(self, request: Request) -> Response:
        request.state.dialect = self
        services = services_of(request)
        pipeline = await services.admit(request, bearer_key(request.headers.get("authorization")))
        reply = reply_kind(request.headers.get("accept"))
        # The ticket comes before the body: when the server is full, the
        # upload is refused unread.
        with pipeline.admission.ticket() as ticket:
            form = await read_form(request)
            image = form.get(IMAGE.name)
            if image is None:
                raise BadRequest("image: is required")
            if not image.data:
                raise BadRequest("image: is empty: the part holds no bytes")
            # Unknown fields (`mode`, `prompt`, `api_key_override`, ...) are
            # ignored, as Stability does.
            options = DEFAULTS.with_fields(form.text)
            cutout = await pipeline.cutout(ticket, bytes(image.data), options, request.receive)
        if reply == "json":
            return JSONResponse(
                {
                    "image": base64.b64encode(cutout.data).decode("ascii"),
                    "finish_reason": "SUCCESS",
                    "seed": 0,
                },
                media_type=f"application/json; type={cutout.media_type}",
            )
        return Response(
            cutout.data,
            media_type=cutout.media_type,
            headers={"finish-reason": "SUCCESS", "seed": "0"},
        )


def bearer_key(header: str | None) -> str | None:
    """`Bearer <key>` or a bare key, as Stability accepts both."""
    if header is None:
        return None
    value = header.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        value = rest.strip()
    return value or None


def reply_kind(accept: str | None) -> Reply:
    """`image/*` (also missing or `*/*`) or `application/json`; anything else is refused."""
    if accept is None or not accept.strip():
        return "image"
    ranges = [item.partition(";")[0].strip().lower() for item in accept.split(",")]
    if "application/json" in ranges:
        return "json"
    if "image/*" in ranges or "*/*" in ranges:
        return "image"
    raise BadRequest("accept: must be one of image/*, application/json")
