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

from ..errors import ApiError, BadRequest, RateLimited
from ..forms import read_form
from ..options import CutoutOptions
from ..services import services_of

PATH = "/v2beta/stable-image/edit/remove-background"

Reply = Literal["image", "json"]


class StabilityDialect:
    name = "stability"

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.remove_background, methods=["POST"])]

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
            image = form.get("image")
            if image is None:
                raise BadRequest("image: is required")
            if not image.data:
                raise BadRequest("image: is empty: the part holds no bytes")
            # Unknown fields (`mode`, `prompt`, `api_key_override`, ...) are
            # ignored, as Stability does.
            options = CutoutOptions().with_fields(form.text)
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
